"""NNCLR (Dwibedi et al. 2021): the positive of a view is the nearest neighbour of its projection in a support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.output import LossOutput, mean_output
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.queue import KeyQueue
from contrastive_seq.views.image import check_image_views


def nearest_neighbours(queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The row of ``support (K, d)`` of highest cosine similarity to each row of ``queries (N, d)``: ``(N, d)``.

    No gradient flows through the lookup; ties go to the first row.
    """
    with torch.no_grad():
        similarity = F.normalize(queries, dim=1) @ F.normalize(support, dim=1).T  # (N, K)
        return support[similarity.argmax(1)]


class NNCLR(Method):
    """NT-Xent between the support-set neighbour of one view's projection and the other view's prediction.

    Batch: ``{"views": (2, N, C, H, W)}``. With projections ``z1, z2`` and
    predictions ``p1, p2`` the loss is ``(NTXent(NN(z1), p2) + NTXent(NN(z2), p1)) / 2``,
    each NT-Xent on the ``2N`` rows of its pair (gathered over ranks). After
    each step the first view's projections of the global batch enter the
    support set, a first-in first-out :class:`KeyQueue` (random unit vectors at
    first), as in the paper and lightly.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projector: features ``-> (N, d)``.
        predictor: ``(N, d) -> (N, d)``.
        loss: an :class:`NTXent` (NNCLR: temperature 0.1).
        support_size: the support set's size K, a multiple of the global batch (N x world size).
    """

    def __init__(
        self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module, loss: NTXent, support_size: int = 8192
    ):
        super().__init__()
        self.online = nn.Sequential(encoder, projector)
        self.predictor = predictor
        self.loss = loss
        self.support = KeyQueue(support_size, projector.output_dim, "support_size")
        self._pending: torch.Tensor | None = None

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        min_samples = 1 if distributed.is_distributed() else 2
        views = check_image_views("batch['views']", batch["views"], min_views=2, max_views=2, min_samples=min_samples)
        self.support.check_batch(views.shape[1] * distributed.world_size())
        projections = encode_views(self.online, views)  # (2, N, d)
        predictions = encode_views(self.predictor, projections)
        neighbours = torch.stack([nearest_neighbours(z, self.support.keys) for z in projections])
        self._pending = distributed.gather(projections[0].detach())
        first = self.loss(torch.stack([neighbours[0], predictions[1]]))
        second = self.loss(torch.stack([neighbours[1], predictions[0]]))
        return mean_output(first, second)

    def after_step(self, step: int) -> None:
        """Put this step's first-view projections (all ranks') into the support set."""
        if self._pending is not None:
            self.support.enqueue(self._pending)
            self._pending = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the projector): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)
