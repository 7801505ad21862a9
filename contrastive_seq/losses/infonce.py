"""The one InfoNCE core every contrastive loss in the library reuses.

:class:`ContrastiveCore` holds the similarity and the temperature;
:func:`contrastive_terms` gives the per-row terms of the formula in
:mod:`contrastive_seq.losses.terms`, from materialised logits or tile by tile
(:mod:`contrastive_seq.losses.tiled`); :func:`reduce_terms` averages them
over the global batch; :class:`InfoNCE` is the loss of queries against
positives and negatives.
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import (
    NegativeSquaredEuclidean,
    Similarity,
    make_similarity,
    pairwise_product,
)
from contrastive_seq.losses.temperature import Temperature
from contrastive_seq.losses.terms import InfoNCETerms, check_block_size, info_nce_from_logits
from contrastive_seq.losses.tiled import LabelPositives, tiled_info_nce, tiled_info_nce_with_negatives
from contrastive_seq.losses.validation import check_embeddings, check_same_dim, check_same_shape


def reduce_terms(terms: InfoNCETerms, temperature: torch.Tensor, all_rows_valid: bool) -> LossOutput:
    """Average per-row terms over the global batch into a :class:`LossOutput`.

    ``all_rows_valid`` skips the count of rows with a positive (one positive per row).
    """
    valid = None if all_rows_valid else terms.valid
    loss = distributed.global_row_mean(terms.loss, valid)
    with torch.no_grad():
        rows = terms.valid.sum().clamp(min=1)
        parts = {
            "accuracy": terms.correct.float().sum() / rows,
            "alignment": -terms.positive_logit.sum() / rows,
            "uniformity": terms.log_denominator.sum() / rows,
            "temperature": temperature.detach(),
        }
    return LossOutput(loss, parts)


class ContrastiveCore(nn.Module):
    """Similarity and temperature, the two parameters every InfoNCE-family loss shares.

    Args:
        similarity: ``"cosine"``, ``"dot"``, ``"neg_sq_euclidean"``, ``"bilinear"``
            or a :class:`Similarity` module.
        temperature: initial temperature tau > 0.
        learnable_temperature: train tau (stored as log 1/tau).
        temperature_bounds: ``(min, max)`` for tau.
        dim: embedding dimension, needed by ``"bilinear"``.
    """

    def __init__(
        self,
        similarity: str | Similarity = "cosine",
        temperature: float = 0.1,
        learnable_temperature: bool = False,
        temperature_bounds: tuple[float, float] = (0.01, 100.0),
        dim: int | None = None,
    ):
        super().__init__()
        self.similarity = make_similarity(similarity, dim)
        self.temperature = Temperature(temperature, learnable_temperature, temperature_bounds)

    @property
    def factorises(self) -> bool:
        """Whether the logits are a product ``left @ right.T`` (every similarity but a custom ``pairwise``)."""
        pairwise = type(self.similarity).pairwise
        return pairwise is Similarity.pairwise or pairwise is NegativeSquaredEuclidean.pairwise

    def logit_factors(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, d), (M, d) -> left (N, D), right (M, D)`` with ``left @ right.T == pairwise_logits(a, b)``.

        The logit scale is folded into ``left``. Dot-product similarities give
        ``D = d`` (``left(a) * scale``, ``right(b)``); the negative squared
        Euclidean distance, ``2 a.b - |a|^2 - |b|^2``, gives ``D = d + 2``.
        Raises ``ValueError`` for a similarity with its own ``pairwise``.
        """
        if not self.factorises:
            raise ValueError(
                f"similarity {type(self.similarity).__name__} overrides pairwise(), so its logits cannot be "
                "computed block by block; use block_size=None or a similarity defined by left() and right()"
            )
        scale = self.temperature.scale()
        if isinstance(self.similarity, NegativeSquaredEuclidean):
            a_norm, b_norm = a.pow(2).sum(-1, keepdim=True), b.pow(2).sum(-1, keepdim=True)
            left = torch.cat([2 * a, -a_norm, torch.ones_like(a_norm)], dim=-1)
            right = torch.cat([b, torch.ones_like(b_norm), -b_norm], dim=-1)
            return left * scale, right
        return self.similarity.left(a) * scale, self.similarity.right(b)

    def pairwise_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (M, d) -> (N, M)`` similarities times the logit scale."""
        if isinstance(self.similarity, NegativeSquaredEuclidean) or not self.factorises:
            return self.similarity.pairwise(a, b) * self.temperature.scale()
        left, right = self.logit_factors(a, b)  # the scale multiplies (N, d), not (N, M)
        return pairwise_product(left, right)


def contrastive_terms(
    core: ContrastiveCore,
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positive: torch.Tensor | LabelPositives,
    exclude: torch.Tensor | None = None,
    decoupled: bool = False,
    block_size: int | None = None,
) -> InfoNCETerms:
    """The core's InfoNCE terms of ``queries (N, d)`` against ``candidates (M, d)``, plain or tiled.

    ``block_size=None`` materialises ``core.pairwise_logits`` and calls
    :func:`info_nce_from_logits` (label positives become their mask); an int
    calls :func:`tiled_info_nce` on ``core.logit_factors``. Arguments as there.
    """
    if block_size is None:
        if isinstance(positive, LabelPositives):
            positive = positive.mask()
        return info_nce_from_logits(core.pairwise_logits(queries, candidates), positive, exclude, decoupled)
    left, right = core.logit_factors(queries, candidates)
    return tiled_info_nce(left, right, positive, exclude, decoupled, block_size)


class InfoNCE(nn.Module):
    """InfoNCE of queries against their positive and negatives (van den Oord et al. 2018).

    ``forward(query (N, d), positive (N, d), negatives=None)``:

    - ``negatives=None``: in-batch negatives, every other row's positive is a
      negative for row i (gathered over ranks in a distributed run);
    - ``negatives (M, d)``: one shared set of M negatives for every query;
    - ``negatives (N, K, d)``: K negatives of each query's own.

    With N candidates in total and random embeddings the loss is about ln N.
    Keyword arguments are those of :class:`ContrastiveCore`, plus ``decoupled``
    (leave the positive out of the denominator, as CEBRA does) and
    ``block_size``: ``None`` materialises the logits, an int computes in-batch
    and shared negatives tile by tile (:mod:`contrastive_seq.losses.tiled`;
    per-query negatives ``(N, K, d)`` always take the plain path, their
    logits being smaller than the negatives themselves).
    """

    def __init__(self, decoupled: bool = False, block_size: int | None = None, **core: object):
        super().__init__()
        self.core = ContrastiveCore(**core)
        self.decoupled = decoupled
        self.block_size = check_block_size(block_size, self.core)

    def forward(
        self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> LossOutput:
        check_embeddings("query", query)
        check_embeddings("positive", positive)
        check_same_shape("query", query, "positive", positive)
        if negatives is not None:
            _check_negatives(query, negatives)
        if self.block_size is not None and (negatives is None or negatives.dim() == 2):
            terms = self._tiled_terms(query, positive, negatives)
        else:
            logits, target = self._logits(query, positive, negatives)
            terms = info_nce_from_logits(logits, target, decoupled=self.decoupled)
        return reduce_terms(terms, self.core.temperature(), all_rows_valid=True)

    def _logits(
        self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The materialised logits ``(N, candidates)`` and the column of each row's positive ``(N,)``."""
        similarity, scale = self.core.similarity, self.core.temperature.scale()
        if negatives is None:
            candidates, target = _in_batch(query, positive)
            return self.core.pairwise_logits(query, candidates), target
        if negatives.dim() == 3:
            negative_scores = similarity.batched(query, negatives)
        else:
            negative_scores = similarity.pairwise(query, negatives)
        positive_scores = similarity.paired(query, positive).unsqueeze(1)
        logits = torch.cat([positive_scores, negative_scores], dim=1) * scale
        return logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device)

    def _tiled_terms(self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None) -> InfoNCETerms:
        """In-batch or shared negatives ``(M, d)``, tile by tile."""
        if negatives is None:
            candidates, target = _in_batch(query, positive)
            return contrastive_terms(self.core, query, candidates, target, None, self.decoupled, self.block_size)
        left, right = self.core.logit_factors(query, torch.cat([positive, negatives]))
        rows = query.shape[0]
        return tiled_info_nce_with_negatives(left, right[:rows], right[rows:], self.decoupled, self.block_size)


def _in_batch(query: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In-batch candidates ``(W·N, d)`` (all ranks' positives, gathered with gradients) and each query's column ``(N,)``."""
    target = torch.arange(query.shape[0], device=query.device) + distributed.row_offset(query.shape[0])
    return distributed.gather_with_grad(positive), target


def _check_negatives(query: torch.Tensor, negatives: torch.Tensor) -> None:
    """``negatives`` must be ``(M, d)`` shared or ``(N, K, d)`` per query, with the query's d."""
    if isinstance(negatives, torch.Tensor) and negatives.dim() == 3:
        check_embeddings("negatives", negatives, rank=3)
        if negatives.shape[0] != query.shape[0]:
            raise ValueError(
                f"negatives of shape (N, K, d) must have N = {query.shape[0]} rows like query, "
                f"got shape {tuple(negatives.shape)}"
            )
    else:
        check_embeddings("negatives", negatives)
    check_same_dim("query", query, "negatives", negatives)
