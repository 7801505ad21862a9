"""Supervised contrastive learning (Khosla et al. 2020): every image with the same label is a positive."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.supcon import SupCon as SupConLoss
from contrastive_seq.losses.validation import check_labels
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.views.image import check_image_views


class SupCon(Method):
    """Encode V views of N labelled images, project, and score them with the SupCon loss.

    Batch: ``{"views": (V, N, C, H, W), "labels": (N,)}``, e.g. from a
    same-class sampler (view v of sample n is an augmented image of class
    ``labels[n]``) or an augmentation sampler on a labelled dataset. Every
    other row with the same label is a positive, every other row a candidate,
    gathered over ranks.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projection: features ``-> (N, d)`` on which the loss is computed.
        loss: a SupCon loss (:class:`contrastive_seq.losses.SupCon`).
    """

    def __init__(self, encoder: nn.Module, projection: nn.Module, loss: SupConLoss):
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        self.loss = loss

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        if "labels" not in batch:
            raise ValueError("SupCon needs batch['labels'] (N,): use a labelled dataset or a same-class sampler")
        min_samples = 1 if distributed.is_distributed() else 2
        views = check_image_views("batch['views']", batch["views"], min_views=1, min_samples=min_samples)
        labels = check_labels("batch['labels']", batch["labels"], views.shape[1])
        features = encode_views(self.encoder, views)
        projections = self.projection(features.flatten(0, 1)).unflatten(0, features.shape[:2])  # (V, N, d)
        return self.loss(projections, labels)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the projection head): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.encoder(x)
