"""Downstream evaluation of learned representations."""

from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.probes import few_label_knn_accuracy, knn_accuracy, linear_probe_accuracy

__all__ = ["embed_in_batches", "few_label_knn_accuracy", "knn_accuracy", "linear_probe_accuracy"]
