"""Margin losses on distances: the triplet loss, with triplets given or mined from a labelled batch
(batch-hard, semi-hard), and the contrastive loss of Hadsell et al. 2006.

Both score rows of ``(N, d)`` tensors pair by pair with a distance ``d(a, b)``:

- ``"euclidean"``: ``d(a, b) = sqrt(||a - b||^2 + eps)`` with ``eps = EUCLIDEAN_EPS = 1e-12``.
  Without ``eps`` the gradient ``(a - b) / ||a - b||`` is 0/0 (NaN) at ``a = b``;
  with it the gradient is finite everywhere (zero at ``a = b``, of norm < 1
  elsewhere) and every distance is shifted up by at most ``sqrt(eps) = 1e-6``.
- ``"cosine"``: ``d(a, b) = 1 - cos(a, b)``, in ``[0, 2]``.

Every row's loss of :class:`TripletMargin` and :class:`ContrastiveMargin` is
local, so in a distributed run each rank averages its own rows and the mean of
the ranks' losses (what DDP's gradient averaging computes) is the loss of the
global batch when ranks hold equal batches. :class:`MinedTripletMargin` mines
over the whole batch, so it gathers the rows of every rank with gradients and
every rank computes the loss of the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import CosineSimilarity
from contrastive_seq.losses.validation import check_embeddings, check_labels, check_positive_number, check_same_shape

EUCLIDEAN_EPS = 1e-12
DISTANCES = ("euclidean", "cosine")
MINING = ("batch_hard", "semi_hard")


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
        return _hinge(self.distance(anchor, positive), self.distance(anchor, negative), self.margin)


def _hinge(positive_distance: torch.Tensor, negative_distance: torch.Tensor, margin: float) -> LossOutput:
    """Triplet loss of the distances ``d(a_i, p_i)`` and ``d(a_i, n_i)``, each ``(T,)``, with its parts."""
    violation = positive_distance - negative_distance + margin
    parts = {
        "active_fraction": (violation > 0).to(violation.dtype).mean(),
        "positive_distance": positive_distance.mean(),
        "negative_distance": negative_distance.mean(),
    }
    return LossOutput(F.relu(violation).mean(), parts)


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


def mine_triplets(
    distances: torch.Tensor, labels: torch.Tensor, mining: str, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices ``(anchor, positive, negative)``, each ``(T,)``, of triplets mined from a labelled batch.

    Args:
        distances: ``(M, M)`` distances between the batch's rows.
        labels: ``(M,)`` class of each row; a positive shares the anchor's class
            (another row), a negative does not.
        mining: ``"batch_hard"`` (Hermans et al. 2017): for each anchor with a
            positive and a negative, its farthest positive and its nearest
            negative, one triplet per anchor. ``"semi_hard"`` (Schroff et al.
            2015): every triplet whose negative lies beyond the positive but
            within the margin, ``0 < d(a, n) - d(a, p) <= margin``.
        margin: the margin of ``"semi_hard"``.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    if mining == "batch_hard":
        anchors = torch.nonzero(positive.any(1) & negative.any(1)).squeeze(1)
        hardest_positive = distances.masked_fill(~positive, float("-inf")).argmax(1)
        hardest_negative = distances.masked_fill(~negative, float("inf")).argmin(1)
        return anchors, hardest_positive[anchors], hardest_negative[anchors]
    gap = distances.unsqueeze(1) - distances.unsqueeze(2)  # gap[a, p, n] = d(a, n) - d(a, p)
    valid = positive.unsqueeze(2) & negative.unsqueeze(1) & (gap > 0) & (gap <= margin)
    anchor, positive_index, negative_index = torch.nonzero(valid, as_tuple=True)
    return anchor, positive_index, negative_index


class MinedTripletMargin(nn.Module):
    """The triplet margin loss on triplets mined from a labelled batch (:func:`mine_triplets`).

    ``forward(embeddings (N, d), labels (N,)) -> LossOutput``: the mean over
    the mined triplets of ``max(0, d(a, p) - d(a, n) + margin)`` (as
    :class:`TripletMargin`), 0 with no gradient-carrying triplet when none is
    mined. Mining sees the batch's distance matrix without its graph; the loss
    takes the mined triplets' entries of it, with the graph. Parts: those of :class:`TripletMargin` plus ``triplets`` (how many
    were mined). In a distributed run rows and labels are gathered from every
    rank (rows with gradients; every rank must hold the same N) and each rank
    computes the loss of the global batch.

    Args:
        margin: the margin, > 0.
        distance: ``"euclidean"`` or ``"cosine"``.
        mining: ``"batch_hard"`` or ``"semi_hard"``.
    """

    def __init__(self, margin: float = 0.2, distance: str = "euclidean", mining: str = "batch_hard"):
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
        self.mining = mining
        self.triplet = TripletMargin(margin, distance)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """Loss of the triplets mined among the rows of ``embeddings`` (N, d) with classes ``labels`` (N,)."""
        check_embeddings("embeddings", embeddings)
        check_labels("labels", labels, embeddings.shape[0])
        rows = distributed.gather_with_grad(embeddings)
        labels = distributed.gather(labels)
        distances = self.triplet.distance(rows.unsqueeze(1), rows.unsqueeze(0))  # (M, M)
        anchor, positive, negative = mine_triplets(distances.detach(), labels, self.mining, self.triplet.margin)
        count = torch.tensor(float(len(anchor)), device=rows.device)
        if len(anchor) == 0:
            zero = rows.sum() * 0
            parts = ("active_fraction", "positive_distance", "negative_distance")
            return LossOutput(zero, {**dict.fromkeys(parts, zero), "triplets": count})
        # the mined triplets' distances are entries of the one (M, M) matrix: indexing it is far cheaper
        # than gathering three (T, d) row blocks when semi-hard mining finds T ~ M^2 triplets
        output = _hinge(distances[anchor, positive], distances[anchor, negative], self.triplet.margin)
        return LossOutput(output.loss, {**output.parts, "triplets": count})
