"""A collapse monitor: how spread out L2-normalised embeddings are, per dimension.

For embeddings z (N, d), normalise each row to unit length and take the
standard deviation of every dimension over the rows, then their mean:

    s = mean_j std_i( z_ij / ||z_i|| )

If the embeddings collapse to one point, s = 0. If they spread uniformly
over the unit sphere, every coordinate has variance 1/d, so s ≈ 1/sqrt(d)
(the reference used to detect collapse in SimSiam, Chen & He 2021). The
ratio s·sqrt(d) thus reads 0 for full collapse and about 1 for a healthy
spread; a value that falls during training warns of (dimensional) collapse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """``s``: mean over dimensions of the standard deviation of the L2-normalised rows of ``embeddings (N, d)``.

    Raises:
        ValueError: for anything but a floating tensor ``(N >= 2, d >= 1)``.
    """
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a floating-point tensor, got {type(embeddings).__name__}")
    if embeddings.dim() != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
        raise ValueError(f"embeddings must have shape (N >= 2, d >= 1), got {tuple(embeddings.shape)}")
    unit = F.normalize(embeddings.detach().double(), dim=1)
    return float(unit.std(dim=0).mean())


def collapse_scores(embeddings: torch.Tensor) -> dict[str, float]:
    """``{"embedding_std": s, "embedding_std_ratio": s·sqrt(d)}`` for ``embeddings (N, d)``."""
    std = normalized_embedding_std(embeddings)
    return {"embedding_std": std, "embedding_std_ratio": std * math.sqrt(embeddings.shape[1])}
