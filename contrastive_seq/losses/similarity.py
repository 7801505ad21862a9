"""Similarity functions of the loss core: cosine, dot, negative squared Euclidean, bilinear.

Each similarity scores pairs of embeddings in three layouts:

- ``pairwise(a (N, d), b (M, d)) -> (N, M)``: every row of ``a`` against every row of ``b``;
- ``paired(a (N, d), b (N, d)) -> (N,)``: row i of ``a`` against row i of ``b``;
- ``batched(a (N, d), b (N, K, d)) -> (N, K)``: row i of ``a`` against its own K rows of ``b``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left (N, D) @ right (M, D).T -> (N, M)``, with the transposed right side made contiguous.

    The backward pass then multiplies the ``(N, M)`` gradient by a transposed
    view of that copy, which CPU BLAS runs 3-4x faster than by a contiguous
    ``right`` when ``D`` is small (CEBRA's embeddings of 3 to 8 dimensions: the
    product's forward and backward at 512 x 3 take 0.40 instead of 1.15 ms on
    one thread); at ``D`` of 64 and more both take the same time.
    """
    return left @ right.transpose(0, 1).contiguous()


class Similarity(nn.Module):
    """Base of the dot-product family: score = <left(a), right(b)>."""

    def left(self, a: torch.Tensor) -> torch.Tensor:
        """Map the query side before the dot product (identity here)."""
        return a

    def right(self, b: torch.Tensor) -> torch.Tensor:
        """Map the candidate side before the dot product (identity here)."""
        return b

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (M, d) -> (N, M)``."""
        return pairwise_product(self.left(a), self.right(b))

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (N, d) -> (N,)``."""
        return (self.left(a) * self.right(b)).sum(-1)

    def batched(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (N, K, d) -> (N, K)``."""
        return torch.einsum("nd,nkd->nk", self.left(a), self.right(b))


class DotSimilarity(Similarity):
    """Plain inner product."""


class CosineSimilarity(Similarity):
    """Inner product of L2-normalised embeddings, in [-1, 1]."""

    def left(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # F.normalize's default floor of 1e-12 is 0 in float16, where a zero row would give 0 / 0
        return F.normalize(a, dim=-1, eps=max(1e-12, torch.finfo(a.dtype).tiny))

    right = left


class BilinearSimilarity(Similarity):
    """``a^T W b`` with a learnable ``W`` (dim, dim), initialised to the identity (CPC's W_k)."""

    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int for the bilinear similarity, got {dim!r}")
        self.weight = nn.Parameter(torch.eye(dim))

    def left(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if a.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"embeddings must have dimension {self.weight.shape[0]} for this bilinear similarity, "
                f"got shape {tuple(a.shape)}"
            )
        return a @ self.weight


class NegativeSquaredEuclidean(Similarity):
    """``-||a - b||^2``: larger is closer, as for the other similarities."""

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        cross = pairwise_product(a, b)
        return 2 * cross - a.pow(2).sum(-1, keepdim=True) - b.pow(2).sum(-1).unsqueeze(0)

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -(a - b).pow(2).sum(-1)

    def batched(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -(a.unsqueeze(1) - b).pow(2).sum(-1)


SIMILARITIES = ("cosine", "dot", "neg_sq_euclidean", "bilinear")


def make_similarity(name: str | Similarity, dim: int | None = None) -> Similarity:
    """Build a similarity by name (one of :data:`SIMILARITIES`), or pass one through.

    ``dim`` is the embedding dimension, required by ``"bilinear"`` only.
    """
    if isinstance(name, Similarity):
        return name
    if name == "cosine":
        return CosineSimilarity()
    if name == "dot":
        return DotSimilarity()
    if name == "neg_sq_euclidean":
        return NegativeSquaredEuclidean()
    if name == "bilinear":
        if dim is None:
            raise ValueError("similarity='bilinear' needs the embedding dimension: pass dim=<int>")
        return BilinearSimilarity(dim)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {name!r}")
