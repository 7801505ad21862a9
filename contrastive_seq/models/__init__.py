"""Encoders and heads."""

from contrastive_seq.models.heads import MLPHead
from contrastive_seq.models.small_cnn import SmallConvNet

__all__ = ["MLPHead", "SmallConvNet"]
