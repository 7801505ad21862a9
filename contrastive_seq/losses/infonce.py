"""The one InfoNCE core every contrastive loss in the library reuses.

For a query row i with candidate logits ``s_ij`` (similarity / temperature),
positive set P(i) and denominator set D(i):

    loss_i = log sum_{j in D(i)} exp(s_ij) - (1/|P(i)|) sum_{p in P(i)} s_ip

D(i) is every candidate except the excluded one (the query itself, when
queries are also candidates); with ``decoupled=True`` it also leaves out the
positives (decoupled contrastive learning, Yeh et al. 2022; CEBRA's loss).
With one positive this is cross-entropy; with several it is SupCon's L_out
(Khosla et al. 2020). The two logged parts add up to the loss:
``alignment = -mean positive logit`` and ``uniformity = mean log-denominator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import NegativeSquaredEuclidean, Similarity, make_similarity
from contrastive_seq.losses.temperature import Temperature
from contrastive_seq.losses.validation import check_embeddings, check_has_negative, check_same_dim, check_same_shape


@dataclass
class InfoNCETerms:
    """Per-row results of :func:`info_nce_from_logits`, each of shape ``(N,)``.

    Rows without a positive have ``valid = False`` and zero in the other fields.
    """

    loss: torch.Tensor
    positive_logit: torch.Tensor
    log_denominator: torch.Tensor
    correct: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def from_rows(
        cls, positive_logit: torch.Tensor, log_denominator: torch.Tensor, correct: torch.Tensor, valid: torch.Tensor
    ) -> InfoNCETerms:
        """Terms from per-row ``(N,)`` parts; rows with ``valid = False`` get zeros (and no gradient)."""
        zero = torch.zeros_like(positive_logit)
        positive_logit = torch.where(valid, positive_logit, zero)
        log_denominator = torch.where(valid, log_denominator, zero)
        return cls(
            loss=log_denominator - positive_logit,
            positive_logit=positive_logit,
            log_denominator=log_denominator,
            correct=correct & valid,
            valid=valid,
        )


def _fill_columns(logits: torch.Tensor, columns: torch.Tensor, value: float) -> torch.Tensor:
    """Copy of ``logits`` (N, M) with entry ``(i, columns[i])`` set to ``value``."""
    return logits.scatter(1, columns.unsqueeze(1), value)


def _first_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Column of each row's first maximum ``(N,)``, as ``argmax`` (``max`` finds it in about half the time)."""
    return logits.detach().max(1).indices


def _is_first_max(logits: torch.Tensor, positive: torch.Tensor, log_denominator: torch.Tensor) -> torch.Tensor:
    """``_first_argmax(logits) == positive`` ``(N,)``, with an argmax only over rows where a tie is possible.

    A row whose positive attains its maximum m has no other maximum when its
    log-sum-exp (over the whole row) is below m + ln 2, since two maxima
    alone give 2 exp(m); the other rows take the argmax. The maximum costs a
    quarter of an argmax pass.
    """
    with torch.no_grad():
        top = logits.amax(1)
        correct = logits.gather(1, positive.unsqueeze(1)).squeeze(1) == top
        rows = (correct & (log_denominator - top > math.log(2) - 0.01)).nonzero().squeeze(1)
        if rows.numel():
            correct[rows] = _first_argmax(logits[rows]) == positive[rows]
    return correct


def info_nce_from_logits(
    logits: torch.Tensor,
    positive: torch.Tensor,
    exclude: torch.Tensor | None = None,
    decoupled: bool = False,
) -> InfoNCETerms:
    """InfoNCE per row from a logit matrix.

    Args:
        logits: ``(N, M)`` scores of N queries against M candidates, already
            divided by the temperature.
        positive: either ``(N,)`` int64, the column of each row's one positive,
            or ``(N, M)`` bool, a mask of each row's positives.
        exclude: optional ``(N,)`` int64, one column per row left out of both
            the positives and the denominator (the query itself).
        decoupled: leave the positives out of the denominator.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, M), got {tuple(logits.shape)}")
    neg_inf = float("-inf")
    check_has_negative(logits.shape[1], exclude is not None)
    if exclude is not None:
        logits = _fill_columns(logits, exclude, neg_inf)
    if positive.dtype == torch.bool:
        if positive.shape != logits.shape:
            raise ValueError(f"positive mask must have shape {tuple(logits.shape)}, got {tuple(positive.shape)}")
        if exclude is not None:
            positive = _fill_columns(positive, exclude, False)
        count = positive.sum(1)
        positive_logit = torch.where(positive, logits, torch.zeros_like(logits)).sum(1) / count.clamp(min=1)
        denominator = logits.masked_fill(positive, neg_inf) if decoupled else logits
        correct = positive.gather(1, _first_argmax(logits).unsqueeze(1)).squeeze(1)
        return InfoNCETerms.from_rows(positive_logit, torch.logsumexp(denominator, dim=1), correct, count > 0)
    if positive.shape != logits.shape[:1]:
        raise ValueError(f"positive index must have shape ({logits.shape[0]},), got {tuple(positive.shape)}")
    valid = torch.ones_like(positive, dtype=torch.bool)
    positive_logit = logits.gather(1, positive.unsqueeze(1)).squeeze(1)
    if decoupled:
        log_denominator = torch.logsumexp(_fill_columns(logits, positive, neg_inf), dim=1)
        return InfoNCETerms.from_rows(positive_logit, log_denominator, _first_argmax(logits) == positive, valid)
    # cross-entropy is the same loss in one fused softmax pass, with no separate backward for the positive's gather
    loss = F.cross_entropy(logits, positive, reduction="none")
    log_denominator = loss + positive_logit
    return InfoNCETerms(loss, positive_logit, log_denominator, _is_first_max(logits, positive, log_denominator), valid)


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
        return left @ right.transpose(0, 1)


def check_block_size(block_size: object, core: ContrastiveCore | None = None) -> int | None:
    """Validate a loss's ``block_size``: ``None`` (materialise the logits) or a positive int.

    With ``core``, also require a similarity whose logits factorise (see
    :meth:`ContrastiveCore.logit_factors`), so a bad combination fails at construction.
    """
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be None (materialised logits) or a positive int, got {block_size!r}")
    if core is not None and not core.factorises:
        raise ValueError(
            f"block_size={block_size} needs a similarity whose logits are left(a) @ right(b).T; "
            f"{type(core.similarity).__name__} overrides pairwise(): use block_size=None"
        )
    return block_size


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
        from contrastive_seq.losses import tiled  # tiled builds on this module

        if negatives is None:
            candidates, target = _in_batch(query, positive)
            return tiled.contrastive_terms(self.core, query, candidates, target, None, self.decoupled, self.block_size)
        left, right = self.core.logit_factors(query, torch.cat([positive, negatives]))
        rows = query.shape[0]
        return tiled.tiled_info_nce_with_negatives(left, right[:rows], right[rows:], self.decoupled, self.block_size)


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
