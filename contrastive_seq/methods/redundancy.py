"""Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022): two branches of one network, a loss on
their batch statistics, no negatives, no predictor, no momentum copy."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.views.image import check_image_views


class RedundancyReduction(Method):
    """``loss(projector(encoder(x)), projector(encoder(x')))`` over two views ``{"views": (2, N, C, H, W)}``.

    Each view is encoded as its own batch; the loss needs N >= 2 rows per
    rank (batch statistics) and is exact over ranks (see
    :mod:`contrastive_seq.losses.redundancy`).

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projector: features ``-> (N, d)`` (both papers: 3 wide layers).
        loss: a :class:`BarlowTwinsLoss` or :class:`VICRegLoss`.
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, loss: BarlowTwinsLoss | VICRegLoss):
        super().__init__()
        self.online = nn.Sequential(encoder, projector)
        self.loss = loss

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        views = check_image_views("batch['views']", batch["views"], min_views=2, max_views=2, min_samples=2)
        projections = encode_views(self.online, views)  # (2, N, d)
        return self.loss(projections[0], projections[1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (before the projector): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)


class BarlowTwins(RedundancyReduction):
    """Barlow Twins: :class:`RedundancyReduction` with a :class:`BarlowTwinsLoss` (default ``lambda = 5e-3``)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, loss: BarlowTwinsLoss | None = None):
        super().__init__(encoder, projector, loss if loss is not None else BarlowTwinsLoss())


class VICReg(RedundancyReduction):
    """VICReg: :class:`RedundancyReduction` with a :class:`VICRegLoss` (default weights 25, 25, 1)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, loss: VICRegLoss | None = None):
        super().__init__(encoder, projector, loss if loss is not None else VICRegLoss())
