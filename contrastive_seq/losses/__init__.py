"""Losses: one InfoNCE core (:mod:`contrastive_seq.losses.infonce`) and the named losses built on it."""

from contrastive_seq.losses.byol import BYOLLoss
from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
from contrastive_seq.losses.cpc import CPCLoss
from contrastive_seq.losses.dino import DINOLoss
from contrastive_seq.losses.infonce import ContrastiveCore, InfoNCE
from contrastive_seq.losses.margin import ContrastiveMargin, MinedTripletMargin, TripletMargin
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from contrastive_seq.losses.similarity import make_similarity
from contrastive_seq.losses.simsiam import SimSiamLoss
from contrastive_seq.losses.supcon import SupCon
from contrastive_seq.losses.swav import SwAVLoss
from contrastive_seq.losses.temperature import Temperature
from contrastive_seq.losses.terms import info_nce_from_logits

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "CLIPLoss",
    "CPCLoss",
    "ContrastiveCore",
    "ContrastiveMargin",
    "DINOLoss",
    "InfoNCE",
    "LossOutput",
    "MinedTripletMargin",
    "MoCoLoss",
    "NTXent",
    "SigLIPLoss",
    "SimSiamLoss",
    "SupCon",
    "SwAVLoss",
    "Temperature",
    "TripletMargin",
    "VICRegLoss",
    "info_nce_from_logits",
    "make_similarity",
]
