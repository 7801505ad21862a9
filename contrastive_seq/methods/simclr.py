"""SimCLR (Chen et al. 2020): augmentation views, a projection head and NT-Xent."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views


class SimCLR(Method):
    """Encode V augmented views of each image, project, and score them with NT-Xent.

    Batch: ``{"views": (V, N, C, H, W)}`` from an augmentation sampler and views step;
    each view is encoded as its own batch (:func:`~contrastive_seq.models.backbones.encode_views`).

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projection: features ``-> (N, d)`` on which the loss is computed.
        loss: an :class:`NTXent` (its temperature and similarity are the method's).
    """

    def __init__(self, encoder: nn.Module, projection: nn.Module, loss: NTXent):
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        self.loss = loss

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        views = batch["views"]
        if views.dim() < 3 or views.shape[0] < 2:
            raise ValueError(f"batch['views'] must have shape (V >= 2, N, ...), got {tuple(views.shape)}")
        if views.shape[1] < 2 and not distributed.is_distributed():
            raise ValueError(
                f"batch['views'] must hold at least 2 images (V, N >= 2, ...): NT-Xent's in-batch negatives "
                f"need another image, got {tuple(views.shape)}"
            )
        return self.loss(encode_views(nn.Sequential(self.encoder, self.projection), views))  # (V, N, d)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the projection head): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.encoder(x)
