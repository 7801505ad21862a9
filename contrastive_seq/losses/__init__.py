"""Losses: one InfoNCE core (:mod:`contrastive_seq.losses.infonce`) and the named losses built on it."""

from contrastive_seq.losses.infonce import ContrastiveCore, InfoNCE, info_nce_from_logits
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import make_similarity
from contrastive_seq.losses.temperature import Temperature
