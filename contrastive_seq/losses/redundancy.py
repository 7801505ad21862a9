"""Redundancy-reduction losses: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022).

Both take two branches ``z_a``, ``z_b`` (N, d), the embeddings of two views of
the same N samples, and need statistics over the batch, hence N >= 2 rows on
every rank. Both compute, on every rank of a distributed run, the loss of the
concatenated global batch, with gradients flowing back through the
communication (summed over ranks in the backward pass); after DDP averages the
gradients over ranks they equal those of a single process on the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_embeddings, check_positive_number, check_same_shape


def _check_non_negative(name: str, value: float) -> float:
    """Require a finite number >= 0 (a weight that may switch its term off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_branches(z_a: object, z_b: object) -> None:
    """Two finite ``(N >= 2, d)`` tensors of one shape."""
    check_embeddings("z_a", z_a, min_rows=2)
    check_embeddings("z_b", z_b, min_rows=2)
    check_same_shape("z_a", z_a, "z_b", z_b)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is again a sum over ranks.

    Every rank's output ``y = sum_r x_r`` feeds every rank's loss L_k, so the
    gradient of ``sum_k L_k`` with respect to ``x_r`` is ``sum_k dL_k/dy``: an
    all-reduce of the incoming gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        total = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, with gradient; ``x`` itself outside a process group."""
    if not distributed.is_distributed():
        return x
    return _AllReduceSum.apply(x)


def _off_diagonal_squares(matrix: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} m_ij^2`` of a square ``(d, d)`` matrix."""
    eye = torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)
    return matrix.masked_fill(eye, 0).pow(2).sum()


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins: drive the cross-correlation of the standardised branches to the identity.

    Each dimension k of each branch is standardised over the batch as by
    BatchNorm without affine, with the biased variance:
    ``z'_nk = (z_nk - mean_k) / sqrt(var_k + epsilon)``, then

        c = z'_a^T z'_b / N                                   (d, d)
        loss = sum_i (1 - c_ii)^2 + lambda_offdiag * sum_{i != j} c_ij^2

    ``forward(z_a (N, d), z_b (N, d)) -> LossOutput`` with N >= 2. Parts:
    ``on_diagonal`` = ``sum_i (1 - c_ii)^2`` and ``off_diagonal`` =
    ``sum_{i != j} c_ij^2`` (unweighted; loss = on + lambda * off).

    Distributed runs are exact: the column sums that give the means, the sums
    of squared deviations that give the variances, the row count and the
    cross-correlation sums ``z'_a^T z'_b`` are all-reduced over ranks with
    gradient, so every rank computes the loss of the concatenated global batch
    (ranks may hold different numbers of rows, each at least 2) and, after
    DDP's averaging, the gradients of a single process on that batch.

    Args:
        lambda_offdiag: weight of the off-diagonal (redundancy) term, >= 0.
        epsilon: added to the variance before the square root, >= 0 (1e-5 as
            in ``BatchNorm1d``; 0 gives exact standardisation but NaN for a
            constant dimension).
    """

    def __init__(self, lambda_offdiag: float = 5e-3, epsilon: float = 1e-5):
        super().__init__()
        self.lambda_offdiag = _check_non_negative("lambda_offdiag", lambda_offdiag)
        self.epsilon = _check_non_negative("epsilon", epsilon)

    def _standardise(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``(N, d) -> (N, d)``: zero mean, unit biased variance per column over the global batch."""
        mean = _global_sum(z.sum(0)) / rows
        centred = z - mean
        variance = _global_sum(centred.pow(2).sum(0)) / rows
        return centred / torch.sqrt(variance + self.epsilon)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> LossOutput:
        """Loss of the two branches ``z_a``, ``z_b`` (N, d)."""
        _check_branches(z_a, z_b)
        rows = _global_sum(torch.tensor(float(z_a.shape[0]), dtype=z_a.dtype, device=z_a.device))
        c = _global_sum(self._standardise(z_a, rows).transpose(0, 1) @ self._standardise(z_b, rows)) / rows
        on_diagonal = (1 - torch.diagonal(c)).pow(2).sum()
        off_diagonal = _off_diagonal_squares(c)
        loss = on_diagonal + self.lambda_offdiag * off_diagonal
        return LossOutput(loss, {"on_diagonal": on_diagonal, "off_diagonal": off_diagonal})


def _variance_term(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``mean_k relu(1 - sqrt(var_k + epsilon))`` of ``z (N, d)``, unbiased variance."""
    std = torch.sqrt(torch.var(z, dim=0, correction=1) + epsilon)
    return F.relu(1 - std).mean()


def _covariance_term(z: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} cov_ij^2 / d`` of ``z (N, d)``, unbiased covariance (N - 1)."""
    centred = z - z.mean(0)
    covariance = centred.transpose(0, 1) @ centred / (z.shape[0] - 1)
    return _off_diagonal_squares(covariance) / z.shape[1]


class VICRegLoss(nn.Module):
    """VICReg: invariance, variance and covariance terms.

    For branches ``z_a``, ``z_b`` (N, d):

        invariance = mean_{n, k} (z_a[n, k] - z_b[n, k])^2
        variance   = v(z_a) + v(z_b),   v(z) = mean_k relu(1 - sqrt(Var_k(z) + epsilon))
        covariance = c(z_a) + c(z_b),   c(z) = sum_{i != j} Cov(z)_ij^2 / d
        loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance

    with unbiased (N - 1) variance and covariance, as the paper's equations
    (the authors' code halves the variance sum, i.e. a variance weight of 12.5).

    ``forward(z_a (N, d), z_b (N, d)) -> LossOutput`` with N >= 2. Parts:
    ``invariance``, ``variance`` and ``covariance``, unweighted. In a
    distributed run both branches are gathered over ranks with gradient
    (every rank must hold the same N) and every rank computes the loss of the
    global batch exactly.

    Args:
        invariance_weight: weight of the invariance term, >= 0.
        variance_weight: weight of the variance term, >= 0.
        covariance_weight: weight of the covariance term, >= 0.
        epsilon: added to the variance before the square root, > 0.
    """

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        epsilon: float = 1e-4,
    ):
        super().__init__()
        self.invariance_weight = _check_non_negative("invariance_weight", invariance_weight)
        self.variance_weight = _check_non_negative("variance_weight", variance_weight)
        self.covariance_weight = _check_non_negative("covariance_weight", covariance_weight)
        self.epsilon = check_positive_number("epsilon", epsilon)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> LossOutput:
        """Loss of the two branches ``z_a``, ``z_b`` (N, d)."""
        _check_branches(z_a, z_b)
        z_a = distributed.gather_with_grad(z_a)
        z_b = distributed.gather_with_grad(z_b)
        invariance = F.mse_loss(z_a, z_b)
        variance = _variance_term(z_a, self.epsilon) + _variance_term(z_b, self.epsilon)
        covariance = _covariance_term(z_a) + _covariance_term(z_b)
        loss = (
            self.invariance_weight * invariance
            + self.variance_weight * variance
            + self.covariance_weight * covariance
        )
        parts = {"invariance": invariance, "variance": variance, "covariance": covariance}
        return LossOutput(loss, parts)
