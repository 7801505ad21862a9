"""Margin losses on distances: the triplet loss and the contrastive loss of Hadsell et al. 2006.

Both score rows of ``(N, d)`` tensors pair by pair with a distance ``d(a, b)``:

- ``"euclidean"``: ``d(a, b) = sqrt(||a - b||^2 + eps)`` with ``eps = EUCLIDEAN_EPS = 1e-12``.
  Without ``eps`` the gradient ``(a - b) / ||a - b||`` is 0/0 (NaN) at ``a = b``;
  with it the gradient is finite everywhere (zero at ``a = b``, of norm < 1
  elsewhere) and every distance is shifted up by at most ``sqrt(eps) = 1e-6``.
- ``"cosine"``: ``d(a, b) = 1 - cos(a, b)``, in ``[0, 2]``.

Every row's loss is local, so in a distributed run each rank averages its own
rows and the mean of the ranks' losses (what DDP's gradient averaging computes)
is the loss of the global batch when ranks hold equal batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import CosineSimilarity
from contrastive_seq.losses.validation import check_embeddings, check_positive_number, check_same_shape

EUCLIDEAN_EPS = 1e-12
DISTANCES = ("euclidean", "cosine")


class PairedDistance(nn.Module):
    """Distance between row i of ``a (N, d)`` and row i of ``b (N, d)``, shape ``(N,)``.

    Args:
        distance: ``"euclidean"`` (``sqrt(||a - b||^2 + EUCLIDEAN_EPS)``) or
            ``"cosine"`` (``1 - cos(a, b)``).
    """

    def __init__(self, distance: str = "euclidean"):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.distance = distance
        self.cosine = CosineSimilarity()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (N, d) -> (N,)``."""
        if self.distance == "euclidean":
            return torch.sqrt((a - b).pow(2).sum(-1) + EUCLIDEAN_EPS)
        return 1 - self.cosine.paired(a, b)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (N,)`` where ``mask (N,)`` is true; 0 when it is true nowhere."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1)


def _check_same(same: object, length: int) -> torch.Tensor:
    """Check that ``same`` is a bool vector of ``length`` entries."""
    if not isinstance(same, torch.Tensor):
        raise TypeError(f"same must be a torch.Tensor, got {type(same).__name__}")
    if same.dtype != torch.bool:
        raise TypeError(f"same must be a bool tensor, got dtype {same.dtype}")
    if same.shape != (length,):
        raise ValueError(f"same must have shape ({length},), got {tuple(same.shape)}")
    return same


class TripletMargin(nn.Module):
    """Triplet margin loss: ``mean_i max(0, d(a_i, p_i) - d(a_i, n_i) + margin)``.

    ``forward(anchor (N, d), positive (N, d), negative (N, d)) -> LossOutput``.
    Parts: ``active_fraction`` (fraction of triplets with a positive hinge,
    i.e. that violate the margin), ``positive_distance`` (mean ``d(a, p)``) and
    ``negative_distance`` (mean ``d(a, n)``).

    Args:
        margin: the margin, > 0.
        distance: ``"euclidean"`` or ``"cosine"`` (see the module docstring).
    """

    def __init__(self, margin: float = 1.0, distance: str = "euclidean"):
        super().__init__()
        self.margin = check_positive_number("margin", margin)
        self.distance = PairedDistance(distance)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> LossOutput:
        """Loss of N triplets, each row of ``anchor``, ``positive``, ``negative`` (N, d) being one."""
        check_embeddings("anchor", anchor)
        check_embeddings("positive", positive)
        check_embeddings("negative", negative)
        check_same_shape("anchor", anchor, "positive", positive)
        check_same_shape("anchor", anchor, "negative", negative)
        positive_distance = self.distance(anchor, positive)
        negative_distance = self.distance(anchor, negative)
        violation = positive_distance - negative_distance + self.margin
        loss = F.relu(violation).mean()
        parts = {
            "active_fraction": (violation > 0).to(violation.dtype).mean(),
            "positive_distance": positive_distance.mean(),
            "negative_distance": negative_distance.mean(),
        }
        return LossOutput(loss, parts)


class ContrastiveMargin(nn.Module):
    """Contrastive loss of Hadsell, Chopra and LeCun 2006 on labelled pairs.

    For pair i with distance ``d_i = d(a_i, b_i)`` and ``same_i`` in {0, 1}:

        loss = mean_i [ same_i * d_i^2 / 2 + (1 - same_i) * max(0, margin - d_i)^2 / 2 ]

    similar pairs are pulled together, dissimilar ones pushed beyond the margin.

    ``forward(a (N, d), b (N, d), same (N,) bool) -> LossOutput``. Parts:
    ``active_fraction`` (fraction of the dissimilar pairs inside the margin,
    whose hinge is active), ``positive_distance`` (mean distance of the similar
    pairs) and ``negative_distance`` (mean distance of the dissimilar pairs);
    each is 0 when the batch has no pair of its kind.

    Args:
        margin: the margin, > 0.
        distance: ``"euclidean"`` or ``"cosine"`` (see the module docstring).
    """

    def __init__(self, margin: float = 1.0, distance: str = "euclidean"):
        super().__init__()
        self.margin = check_positive_number("margin", margin)
        self.distance = PairedDistance(distance)

    def forward(self, a: torch.Tensor, b: torch.Tensor, same: torch.Tensor) -> LossOutput:
        """Loss of the N pairs ``(a_i, b_i)``, similar where ``same_i`` is true."""
        check_embeddings("a", a)
        check_embeddings("b", b)
        check_same_shape("a", a, "b", b)
        _check_same(same, a.shape[0])
        distance = self.distance(a, b)
        pull = 0.5 * distance.pow(2)
        push = 0.5 * F.relu(self.margin - distance).pow(2)
        loss = torch.where(same, pull, push).mean()
        different = ~same
        parts = {
            "active_fraction": _masked_mean((distance < self.margin).to(distance.dtype), different),
            "positive_distance": _masked_mean(distance, same),
            "negative_distance": _masked_mean(distance, different),
        }
        return LossOutput(loss, parts)
