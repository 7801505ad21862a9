"""The InfoNCE terms per row, from a materialised logit matrix: the formula every contrastive loss reuses.

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
from typing import Protocol

import torch
import torch.nn.functional as F

from contrastive_seq.losses.validation import check_has_negative


class _FactorisingCore(Protocol):
    factorises: bool
    similarity: object


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


def check_block_size(block_size: object, core: _FactorisingCore | None = None) -> int | None:
    """Validate a loss's ``block_size``: ``None`` (materialise the logits) or a positive int.

    With ``core``, also require a similarity whose logits factorise (see
    :meth:`~contrastive_seq.losses.infonce.ContrastiveCore.logit_factors`), so a bad combination fails at construction.
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
