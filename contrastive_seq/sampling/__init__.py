"""Samplers: what to pair, as index tensors (see :class:`Sampler`)."""

from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.sampling.same_class import SameClassSampler

__all__ = ["AugmentationSampler", "PairIndex", "SameClassSampler", "Sampler"]

from contrastive_seq.sampling.behaviour import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
)
from contrastive_seq.sampling.multisession import (
    MultiSessionDiscreteSampler,
    MultiSessionSampler,
    MultiSessionTimeSampler,
)
from contrastive_seq.sampling.time import RecordingSampler, TimeContrastiveSampler

__all__ += [
    "ContinuousBehaviourSampler",
    "DiscreteBehaviourSampler",
    "HybridSampler",
    "MixedBehaviourSampler",
    "MultiSessionDiscreteSampler",
    "MultiSessionSampler",
    "MultiSessionTimeSampler",
    "RecordingSampler",
    "TimeContrastiveSampler",
]
