"""contrastive_seq: contrastive and self-supervised representation learning on domain data.

Every method is a choice of what to pair (:mod:`contrastive_seq.sampling`), how
to present it (:mod:`contrastive_seq.views`), what encodes it
(:mod:`contrastive_seq.models`) and how to score it (:mod:`contrastive_seq.losses`),
trained by the one :class:`contrastive_seq.training.Trainer`.

The names below are imported on first use, so ``import contrastive_seq``
(and ``contrastive-seq --help``) loads no heavy dependency.
"""

from contrastive_seq.lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "ContrastiveEmbedding": "contrastive_seq.estimator",
    "export_encoder": "contrastive_seq.export",
    "load_encoder": "contrastive_seq.export",
    "load_experiment_config": "contrastive_seq.experiments",
    "run_experiment": "contrastive_seq.experiments",
    "evaluate_run": "contrastive_seq.experiments",
    "CEBRA": "contrastive_seq.cebra_api",  # CEBRA's drop-in API
    "plot_loss": "contrastive_seq.cebra_api",
    "plot_temperature": "contrastive_seq.cebra_api",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
