"""scikit-learn's handwritten digits (1,797 grey 8x8 images, 10 classes): the built-in example data."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as _sklearn_digits

from contrastive_seq.data.arrays import ArrayDataset


def load_digits() -> ArrayDataset:
    """All 1,797 digits as images ``(1797, 1, 8, 8)`` in [0, 1] with labels ``(1797,)``."""
    bunch = _sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return ArrayDataset(images, torch.as_tensor(bunch.target))
