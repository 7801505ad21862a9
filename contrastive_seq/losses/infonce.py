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

from dataclasses import dataclass

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import Similarity, make_similarity
from contrastive_seq.losses.temperature import Temperature
from contrastive_seq.losses.validation import check_embeddings, check_same_dim, check_same_shape


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


def _fill_columns(logits: torch.Tensor, columns: torch.Tensor, value: float) -> torch.Tensor:
    """Copy of ``logits`` (N, M) with entry ``(i, columns[i])`` set to ``value``."""
    return logits.scatter(1, columns.unsqueeze(1), value)


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
    if decoupled and logits.shape[1] - (exclude is not None) < 2:
        raise ValueError(
            f"decoupled InfoNCE needs a negative besides the positive in every row, got {logits.shape[1]} candidates"
            + (" with one excluded" if exclude is not None else "")
        )
    if exclude is not None:
        logits = _fill_columns(logits, exclude, neg_inf)
    if positive.dtype == torch.bool:
        if positive.shape != logits.shape:
            raise ValueError(f"positive mask must have shape {tuple(logits.shape)}, got {tuple(positive.shape)}")
        if exclude is not None:
            positive = _fill_columns(positive, exclude, False)
        count = positive.sum(1)
        valid = count > 0
        positive_logit = torch.where(positive, logits, torch.zeros_like(logits)).sum(1) / count.clamp(min=1)
        denominator = logits.masked_fill(positive, neg_inf) if decoupled else logits
        correct = positive.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
    else:
        if positive.shape != logits.shape[:1]:
            raise ValueError(f"positive index must have shape ({logits.shape[0]},), got {tuple(positive.shape)}")
        valid = torch.ones_like(positive, dtype=torch.bool)
        positive_logit = logits.gather(1, positive.unsqueeze(1)).squeeze(1)
        denominator = _fill_columns(logits, positive, neg_inf) if decoupled else logits
        correct = logits.argmax(1) == positive
    log_denominator = torch.logsumexp(denominator, dim=1)
    zero = torch.zeros_like(positive_logit)
    positive_logit = torch.where(valid, positive_logit, zero)
    log_denominator = torch.where(valid, log_denominator, zero)
    return InfoNCETerms(
        loss=log_denominator - positive_logit,
        positive_logit=positive_logit,
        log_denominator=log_denominator,
        correct=correct & valid,
        valid=valid,
    )


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

    def pairwise_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, d), (M, d) -> (N, M)`` similarities times the logit scale."""
        return self.similarity.pairwise(a, b) * self.temperature.scale()


class InfoNCE(nn.Module):
    """InfoNCE of queries against their positive and negatives (van den Oord et al. 2018).

    ``forward(query (N, d), positive (N, d), negatives=None)``:

    - ``negatives=None``: in-batch negatives, every other row's positive is a
      negative for row i (gathered over ranks in a distributed run);
    - ``negatives (M, d)``: one shared set of M negatives for every query;
    - ``negatives (N, K, d)``: K negatives of each query's own.

    With N candidates in total and random embeddings the loss is about ln N.
    Keyword arguments are those of :class:`ContrastiveCore`, plus ``decoupled``
    (leave the positive out of the denominator, as CEBRA does).
    """

    def __init__(self, decoupled: bool = False, **core: object):
        super().__init__()
        self.core = ContrastiveCore(**core)
        self.decoupled = decoupled

    def forward(
        self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> LossOutput:
        check_embeddings("query", query)
        check_embeddings("positive", positive)
        check_same_shape("query", query, "positive", positive)
        similarity, scale = self.core.similarity, self.core.temperature.scale()
        if negatives is None:
            candidates = distributed.gather_with_grad(positive)
            logits = similarity.pairwise(query, candidates) * scale
            target = torch.arange(query.shape[0], device=query.device) + distributed.row_offset(query.shape[0])
        else:
            if negatives.dim() == 3:
                check_embeddings("negatives", negatives, rank=3)
                if negatives.shape[0] != query.shape[0]:
                    raise ValueError(
                        f"negatives of shape (N, K, d) must have N = {query.shape[0]} rows like query, "
                        f"got shape {tuple(negatives.shape)}"
                    )
                negative_scores = similarity.batched(query, negatives)
            else:
                check_embeddings("negatives", negatives)
                negative_scores = similarity.pairwise(query, negatives)
            check_same_dim("query", query, "negatives", negatives)
            positive_scores = similarity.paired(query, positive).unsqueeze(1)
            logits = torch.cat([positive_scores, negative_scores], dim=1) * scale
            target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        terms = info_nce_from_logits(logits, target, decoupled=self.decoupled)
        return reduce_terms(terms, self.core.temperature(), all_rows_valid=True)
