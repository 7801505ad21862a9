"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp codes over learnable prototypes, with multi-crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.swav import SwAVLoss
from contrastive_seq.methods.base import Method, check_freeze_steps, drop_gradients
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.heads import Prototypes
from contrastive_seq.models.queue import KeyQueue
from contrastive_seq.views.image import check_image_views


class SwAV(Method):
    """Prototype scores of every crop; each global crop's codes are predicted from every other crop.

    Batch: ``{"views": (G, N, C, H, W)}`` global crops (G >= 2) and optionally
    ``{"local_views": (L, N, C, h, w)}`` local crops
    (:class:`~contrastive_seq.views.multicrop.MultiCropViews`). Every crop goes
    through ``projector(encoder(x))``, is L2-normalised and scored against the
    :class:`Prototypes` (renormalised before each step). :class:`SwAVLoss`
    computes the codes by Sinkhorn-Knopp with sums over ranks.

    The prototypes get no gradient for the first ``freeze_prototypes_steps``
    steps (SwAV: the first epoch), through :meth:`before_optimizer_step`.
    With ``queue_size``, each global crop keeps the normalised embeddings of
    this rank's past batches (``queue_size`` rows per rank, as SwAV's queue);
    once full, their scores join the batch's in Sinkhorn-Knopp.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projector: features ``-> (N, d)`` with ``output_dim``.
        prototypes: ``Prototypes(d, K)``.
        loss: a :class:`SwAVLoss`.
        freeze_prototypes_steps: steps without prototype updates (>= 0).
        queue_size: rows kept per global crop and rank, a multiple of the
            per-rank batch N; ``None``: no queue.
        global_crops: G, the number of queues (SwAV: 2).
    """

    queued: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        prototypes: Prototypes,
        loss: SwAVLoss | None = None,
        freeze_prototypes_steps: int = 0,
        queue_size: int | None = None,
        global_crops: int = 2,
    ):
        super().__init__()
        self.online = nn.Sequential(encoder, projector)
        self.prototypes = prototypes
        self.loss = loss if loss is not None else SwAVLoss()
        self.freeze_prototypes_steps = check_freeze_steps("freeze_prototypes_steps", freeze_prototypes_steps)
        self.queues = None
        if queue_size is not None:
            self.queues = nn.ModuleList(KeyQueue(queue_size, projector.output_dim) for _ in range(global_crops))
        self.register_buffer("queued", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def _embed_crops(self, views: torch.Tensor) -> torch.Tensor:
        """``(V, N, C, H, W) -> (V, N, d)`` unit embeddings."""
        return F.normalize(encode_views(self.online, views), dim=2)

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        global_views = check_image_views("batch['views']", batch["views"], min_views=2)
        self.prototypes.normalize_()
        embeddings = self._embed_crops(global_views)  # (G, N, d)
        local_scores = None
        if "local_views" in batch:
            local_views = check_image_views("batch['local_views']", batch["local_views"])
            if local_views.shape[1] != global_views.shape[1]:
                raise ValueError(
                    f"batch['local_views'] must hold N = {global_views.shape[1]} images like batch['views'], "
                    f"got {tuple(local_views.shape)}"
                )
            local_scores = self.prototypes(self._embed_crops(local_views))
        queue_scores = None
        if self.queues is not None:
            if len(self.queues) != global_views.shape[0]:
                raise ValueError(
                    f"batch['views'] must hold {len(self.queues)} global crops (one per queue), "
                    f"got {tuple(global_views.shape)}"
                )
            self.queues[0].check_batch(global_views.shape[1])
            if int(self.queued) >= self.queues[0].size:
                with torch.no_grad():
                    queue_scores = torch.stack([self.prototypes(queue.keys) for queue in self.queues])
            self._pending = embeddings.detach()
        return self.loss(self.prototypes(embeddings), local_scores, queue_scores)

    def before_optimizer_step(self, step: int) -> None:
        """No prototype update during the first ``freeze_prototypes_steps`` steps."""
        if step < self.freeze_prototypes_steps:
            drop_gradients(self.prototypes)

    def after_step(self, step: int) -> None:
        """Put this step's global-crop embeddings (this rank's) into the queues."""
        if self._pending is not None:
            for queue, rows in zip(self.queues, self._pending, strict=True):
                queue.enqueue(rows)
            self.queued.add_(self._pending.shape[1])
            self._pending = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the projector): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)
