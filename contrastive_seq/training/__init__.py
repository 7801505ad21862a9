"""Training: the one loop (:class:`Trainer`), its batches, schedules, checkpoints and metrics."""

from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from contrastive_seq.training.trainer import Trainer, TrainerConfig

__all__ = ["CheckpointError", "SampledBatches", "Trainer", "TrainerConfig", "load_checkpoint", "save_checkpoint"]
