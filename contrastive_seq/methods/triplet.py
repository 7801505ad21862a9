"""Triplet metric learning (Schroff et al. 2015; Hermans et al. 2017): triplets mined from a labelled batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.losses.margin import MinedTripletMargin
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_labels
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.views.image import check_image_views


class TripletMetric(Method):
    """Embed V views of N labelled images and score the triplets mined among all V·N rows.

    Batch: ``{"views": (V, N, C, H, W), "labels": (N,)}``, e.g. from a
    same-class sampler (view v of sample n is an image of class ``labels[n]``).
    The rows ``embedding(views[v][n])`` carry the label ``labels[n]``;
    :class:`MinedTripletMargin` mines batch-hard or semi-hard triplets among
    them (over every rank's rows).

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        head: features ``-> (N, d)``, the metric space (``nn.Identity()`` for the encoder's own).
        loss: a :class:`MinedTripletMargin`.
        normalize: put the embeddings on the unit sphere before the loss (FaceNet).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, loss: MinedTripletMargin, normalize: bool = True):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.loss = loss
        self.normalize = normalize

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        if "labels" not in batch:
            raise ValueError("TripletMetric needs batch['labels'] (N,): use a labelled dataset or a same-class sampler")
        views = check_image_views("batch['views']", batch["views"], min_views=1)
        labels = check_labels("batch['labels']", batch["labels"], views.shape[1])
        embeddings = encode_views(nn.Sequential(self.encoder, self.head), views).flatten(0, 1)  # (V*N, d), view-major
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        return self.loss(embeddings, labels.repeat(views.shape[0]))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the head): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.encoder(x)
