"""Training: the one loop (:class:`Trainer`), its batches, schedules, checkpoints and metrics."""

from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from contrastive_seq.training.gradient_cache import GradientCache
from contrastive_seq.training.trainer import NonFiniteLossError, Trainer, TrainerConfig

__all__ = [
    "CheckpointError",
    "GradientCache",
    "NonFiniteLossError",
    "SampledBatches",
    "Trainer",
    "TrainerConfig",
    "load_checkpoint",
    "save_checkpoint",
]
