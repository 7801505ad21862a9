"""Training: the one loop (:class:`Trainer`), its batches, schedules, checkpoints and metrics.

:class:`TrainerConfig` and :class:`CheckpointError` import no torch (reading a
config needs them); the other names are imported on first use.
"""

from contrastive_seq.lazy import lazy_attributes
from contrastive_seq.training.config import TrainerConfig
from contrastive_seq.training.errors import CheckpointError

_LAZY = {
    "GradientCache": "contrastive_seq.training.gradient_cache",
    "NonFiniteLossError": "contrastive_seq.training.trainer",
    "SampledBatches": "contrastive_seq.training.batches",
    "Trainer": "contrastive_seq.training.trainer",
    "load_checkpoint": "contrastive_seq.training.checkpoint",
    "save_checkpoint": "contrastive_seq.training.checkpoint",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(["CheckpointError", "TrainerConfig", *_LAZY])
