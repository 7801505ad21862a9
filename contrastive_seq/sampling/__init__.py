"""Samplers: what to pair, as index tensors (see :class:`Sampler`)."""

from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.sampling.same_class import SameClassSampler

__all__ = ["AugmentationSampler", "PairIndex", "SameClassSampler", "Sampler"]
