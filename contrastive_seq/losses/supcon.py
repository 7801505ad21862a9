"""Supervised contrastive loss, L_out of Khosla et al. 2020.

Each of the V·N rows of ``views (V, N, d)`` is a query; its positives P(i) are
all other rows (any view) with its label, its denominator every row but itself:

    loss_i = log sum_{k != i} exp(s_ik / tau) - (1/|P(i)|) sum_{p in P(i)} s_ip / tau

Rows without a positive are left out of the mean. In a distributed run the
embeddings (with gradients) and labels of all ranks are gathered, and the mean
is taken over the valid rows of the global batch. With ``block_size`` set,
the logits are computed tile by tile (:mod:`contrastive_seq.losses.tiled`)
and neither they nor the positive mask are materialised.
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.infonce import ContrastiveCore, contrastive_terms, reduce_terms
from contrastive_seq.losses.ntxent import flatten_views
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.terms import check_block_size
from contrastive_seq.losses.tiled import LabelPositives
from contrastive_seq.losses.validation import check_labels


class SupCon(nn.Module):
    """SupCon over V >= 1 views of N labelled samples.

    ``forward(views (V, N, d) or (N, d), labels (N,) int) -> LossOutput``, averaged
    over the rows that have at least one positive; raises ``ValueError`` when no
    row of the (global) batch has one. Parts: ``accuracy``, ``alignment``,
    ``uniformity`` and ``temperature`` (over this rank's rows with a positive).

    Args:
        block_size: ``None`` materialises the (V·N, V·N) logits and positive
            mask; an int computes in tiles of that many rows and columns.
        **core: keyword arguments of :class:`ContrastiveCore`; the defaults are
            cosine similarity and temperature 0.1.
    """

    def __init__(self, block_size: int | None = None, **core: object):
        super().__init__()
        core.setdefault("temperature", 0.1)
        self.core = ContrastiveCore(**core)
        self.block_size = check_block_size(block_size, self.core)

    def forward(self, views: torch.Tensor, labels: torch.Tensor) -> LossOutput:  # noqa: D102
        if isinstance(views, torch.Tensor):
            if views.dim() not in (2, 3):
                raise ValueError(f"views must have shape (V, N, d) or (N, d), got {tuple(views.shape)}")
            if views.dim() == 2:
                views = views.unsqueeze(0)
        rows = flatten_views(views)
        n_views, samples = views.shape[:2]
        labels = check_labels("labels", labels, samples).to(rows.device)
        row_labels = labels.repeat(n_views)
        candidates = distributed.gather_with_grad(rows)
        candidate_labels = distributed.gather(row_labels)
        positive = LabelPositives(row_labels, candidate_labels)
        offset = distributed.row_offset(rows.shape[0])
        self_column = offset + torch.arange(rows.shape[0], device=rows.device)
        terms = contrastive_terms(self.core, rows, candidates, positive, self_column, block_size=self.block_size)
        return reduce_terms(terms, self.core.temperature(), all_rows_valid=False)
