"""MoCo's loss (He et al. 2020): InfoNCE of queries against momentum keys and a queue.

For query q_i, its key k_i (from the momentum encoder) and a queue of K keys
from earlier batches:

    loss_i = -log exp(s(q_i, k_i) / tau) / (exp(s(q_i, k_i) / tau) + sum_k exp(s(q_i, queue_k) / tau))

Keys and queue are detached: only the query side is trained. Without a queue
the other keys of the batch (gathered over ranks, MoCo v3) are the negatives.
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_embeddings, check_same_dim, check_same_shape


class MoCoLoss(nn.Module):
    """InfoNCE with detached keys and queue, a thin wrapper of :class:`InfoNCE`.

    ``forward(query (N, d), key (N, d), queue (K, d) or None) -> LossOutput``,
    averaged over the N queries. Parts: those of :class:`InfoNCE` (``accuracy``,
    ``alignment``, ``uniformity``, ``temperature``).

    Args:
        **core: keyword arguments of :class:`InfoNCE` (those of
            :class:`ContrastiveCore`, plus ``decoupled``); the defaults are
            cosine similarity and temperature 0.2 (MoCo v2).
    """

    def __init__(self, **core: object):
        super().__init__()
        core.setdefault("temperature", 0.2)
        self.info_nce = InfoNCE(**core)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor | None = None
    ) -> LossOutput:
        """Loss of ``query (N, d)`` against ``key (N, d)`` and ``queue (K, d)`` (in-batch keys when None)."""
        check_embeddings("query", query)
        check_embeddings("key", key)
        check_same_shape("query", query, "key", key)
        if queue is not None:
            check_embeddings("queue", queue)
            check_same_dim("query", query, "queue", queue)
            queue = queue.detach()
        return self.info_nce(query, key.detach(), queue)
