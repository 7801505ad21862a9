"""Downstream evaluation of learned representations."""

from contrastive_seq.evaluation.consistency import (
    align_by_behaviour,
    consistency_across_sessions,
    consistency_matrix,
    linear_consistency,
)
from contrastive_seq.evaluation.decoding import is_discrete, knn_decode, knn_regression_scores
from contrastive_seq.evaluation.distributed_embed import (
    embed_across_ranks,
    knn_accuracy_across_ranks,
    linear_probe_accuracy_across_ranks,
    probe_scores_across_ranks,
)
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.probes import as_numpy, few_label_knn_accuracy, knn_accuracy, linear_probe_accuracy

__all__ = [
    "align_by_behaviour",
    "as_numpy",
    "consistency_across_sessions",
    "consistency_matrix",
    "embed_across_ranks",
    "embed_in_batches",
    "few_label_knn_accuracy",
    "is_discrete",
    "knn_accuracy",
    "knn_accuracy_across_ranks",
    "knn_decode",
    "knn_regression_scores",
    "linear_consistency",
    "linear_probe_accuracy",
    "linear_probe_accuracy_across_ranks",
    "probe_scores_across_ranks",
]
