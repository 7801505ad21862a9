"""Containers and loaders for the data the samplers index into."""

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.digits import load_digits

__all__ = ["ArrayDataset", "load_digits"]
