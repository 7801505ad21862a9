"""MoCo: queries from the trained encoder against keys from its momentum copy.

- v2 (He et al. 2020; Chen et al. 2020b): a projection MLP, a queue of past
  keys as negatives, the query of view 1 against the key of view 2.
- v3 (Chen, Xie & He 2021): no queue; a predictor after the query projection;
  symmetric, each view's query against the other view's key with the batch's
  other keys (gathered over ranks) as negatives.

The momentum copy follows ``encoder + projection`` after every step
(:class:`~contrastive_seq.models.ema.EMACopy`, cosine schedule).
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.output import LossOutput, mean_output
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.ema import EMACopy
from contrastive_seq.models.queue import KeyQueue
from contrastive_seq.views.image import check_image_views


class MoCo(Method):
    """Momentum contrast over two augmented views ``{"views": (2, N, C, H, W)}``.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projection: features ``-> (N, d)``; the keys are the momentum copy's ``projection(encoder(x))``.
        loss: a :class:`MoCoLoss` (temperature and similarity).
        predictor: ``(N, d) -> (N, d)`` after the query's projection (v3), or ``None`` (v2).
        queue_size: K keys of past batches as negatives (v2), or ``None`` for
            the batch's own keys (v3). K must be a multiple of the keys
            enqueued per step: per-rank batch x world size, x 2 when symmetric.
        symmetric: score both views as queries (v3; v2 used view 1 only).
        base_momentum, final_momentum, momentum_steps: the momentum schedule
            of :class:`EMACopy` (``momentum_steps=None``: the run's length; for a
            constant momentum set ``final_momentum = base_momentum``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection: nn.Module,
        loss: MoCoLoss,
        predictor: nn.Module | None = None,
        queue_size: int | None = 65536,
        symmetric: bool = False,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
        momentum_steps: int | None = None,
    ):
        super().__init__()
        self.online = nn.Sequential(encoder, projection)
        self.predictor = predictor if predictor is not None else nn.Identity()
        self.momentum_encoder = EMACopy(self.online, base_momentum, final_momentum, momentum_steps)
        self.loss = loss
        self.symmetric = symmetric
        self.queue = None if queue_size is None else KeyQueue(queue_size, projection.output_dim)
        self._pending_keys: torch.Tensor | None = None

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        in_batch_negatives = self.queue is None and not distributed.is_distributed()
        views = check_image_views(
            "batch['views']", batch["views"], min_views=2, max_views=2, min_samples=2 if in_batch_negatives else 1
        )
        query_views = views if self.symmetric else views[:1]
        key_views = views.flip(0) if self.symmetric else views[1:]  # the key of each query is the other view
        if self.queue is not None:
            self.queue.check_batch(key_views.shape[0] * key_views.shape[1] * distributed.world_size())
        projections = encode_views(self.online, query_views)  # (Vq, N, d)
        queries = self.predictor(projections.flatten(0, 1)).unflatten(0, projections.shape[:2])
        keys = encode_views(self.momentum_encoder, key_views)
        outputs = [self._score(queries[v], keys[v]) for v in range(queries.shape[0])]
        if self.queue is not None:  # keys of the global batch, view-major as on one process with the whole batch
            self._pending_keys = distributed.gather(keys.transpose(0, 1)).transpose(0, 1).flatten(0, 1)
        return outputs[0] if len(outputs) == 1 else mean_output(*outputs)

    def _score(self, queries: torch.Tensor, keys: torch.Tensor) -> LossOutput:
        """Loss of ``queries (N, d)`` against ``keys (N, d)`` and the queue, or the batch's keys without one."""
        return self.loss(queries, keys, None if self.queue is None else self.queue.keys)

    def after_step(self, step: int) -> None:
        """Move the momentum encoder towards the online one; enqueue this step's keys (all ranks')."""
        self.momentum_encoder.update(self.online, step)
        if self._pending_keys is not None:
            self.queue.enqueue(self._pending_keys)
            self._pending_keys = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Online encoder features (before the projection): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)
