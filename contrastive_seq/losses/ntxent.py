"""NT-Xent, SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020).

Every one of the V·N rows of ``views (V, N, d)`` is a query. Its positives are
the other V-1 views of the same sample, its denominator every other row of the
(global) batch:

    loss_i = log sum_{k != i} exp(s_ik / tau) - (1/(V-1)) sum_{p in P(i)} s_ip / tau

With V = 2 this is SimCLR's loss exactly; with V > 2 it is the multi-positive
form of the core. In a distributed run the rows of all ranks are gathered with
gradients, so the loss equals a single process on the concatenated batch.
With ``block_size`` set, the logits are computed tile by tile
(:mod:`contrastive_seq.losses.tiled`) and never materialised.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.infonce import ContrastiveCore, contrastive_terms, reduce_terms
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.terms import check_block_size
from contrastive_seq.losses.tiled import LabelPositives
from contrastive_seq.losses.validation import check_embeddings


def flatten_views(views: torch.Tensor, min_views: int = 1, name: str = "views") -> torch.Tensor:
    """Check ``views (V, N, d)`` and flatten it view-major to rows ``(V*N, d)``.

    Row ``v * N + n`` of the result is view v of sample n.

    Args:
        views: ``(V, N, d)`` embeddings, V views of N samples.
        min_views: least number of views V.
        name: the argument's name, used in errors.
    """
    check_embeddings(name, views, rank=3)
    if views.shape[0] < min_views:
        raise ValueError(
            f"{name} must hold at least {min_views} views, shape (V, N, d) with V >= {min_views}, "
            f"got shape {tuple(views.shape)}"
        )
    if views.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sample, shape (V, N >= 1, d), got {tuple(views.shape)}")
    return rearrange(views, "v n d -> (v n) d")


def gathered_sample_ids(n_views: int, samples: int, device: torch.device) -> torch.Tensor:
    """Global sample id of every row gathered from all ranks, ``(world * V * N,)``.

    Each rank contributes its ``V * N`` view-major rows (see :func:`flatten_views`);
    row ``v * N + n`` of rank r is sample ``r * N + n`` of the global batch.
    """
    local = torch.arange(samples, device=device).repeat(n_views)
    first = torch.arange(distributed.world_size(), device=device).unsqueeze(1) * samples
    return (first + local).reshape(-1)


class NTXent(nn.Module):
    """SimCLR's NT-Xent over V >= 2 views of each sample.

    ``forward(views (V, N, d)) -> LossOutput``, averaged over all V·N rows.
    Parts: ``accuracy`` (a positive scores highest among the candidates),
    ``alignment``, ``uniformity`` and ``temperature``.

    Args:
        decoupled: leave the positives out of the denominator (decoupled
            contrastive learning, Yeh et al. 2022).
        block_size: ``None`` materialises the (V·N, V·N) logits; an int
            computes them in tiles of that many rows and columns (same loss,
            parts and gradients, memory O(V·N · d + block_size^2)).
        **core: keyword arguments of :class:`ContrastiveCore`; the defaults here
            are cosine similarity and temperature 0.5.
    """

    def __init__(self, decoupled: bool = False, block_size: int | None = None, **core: object):
        super().__init__()
        core.setdefault("temperature", 0.5)
        self.core = ContrastiveCore(**core)
        self.decoupled = decoupled
        self.block_size = check_block_size(block_size, self.core)

    def forward(self, views: torch.Tensor) -> LossOutput:  # noqa: D102
        rows = flatten_views(views, min_views=2)
        n_views, samples = views.shape[:2]
        if self.decoupled and samples * distributed.world_size() < 2:
            raise ValueError(
                f"views must hold at least 2 samples in all for decoupled NT-Xent (a row needs a negative), "
                f"got shape {tuple(views.shape)}"
            )
        candidates = distributed.gather_with_grad(rows)
        local = torch.arange(rows.shape[0], device=rows.device)
        offset = distributed.row_offset(rows.shape[0])
        if n_views == 2:
            # row v*N + n has its positive at (1-v)*N + n within this rank's block
            positive = offset + (local + samples) % rows.shape[0]
        else:
            sample = gathered_sample_ids(n_views, samples, rows.device)
            positive = LabelPositives(sample[offset + local], sample)
        terms = contrastive_terms(
            self.core, rows, candidates, positive, offset + local, self.decoupled, self.block_size
        )
        return reduce_terms(terms, self.core.temperature(), all_rows_valid=True)
