"""SimSiam (Chen & He 2021): a predictor regresses the other view's projection through a stop-gradient,
with no momentum copy."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.simsiam import SimSiamLoss
from contrastive_seq.methods.base import Method, ParamGroup
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.views.image import check_image_views


class SimSiam(Method):
    """``predictor(projector(encoder(x)))`` matches ``sg(projector(encoder(x')))``, both ways.

    Batch: ``{"views": (2, N, C, H, W)}``. The loss is :class:`SimSiamLoss`
    averaged over both directions, ``(D(p1, z2) + D(p2, z1)) / 2``, in [-1, 1].
    Each view is encoded as its own batch (BatchNorm per view, as SimSiam).
    SimSiam keeps the predictor's learning rate fixed while the rest follows
    the schedule: ``fixed_predictor_lr`` gives it a :class:`ParamGroup` with
    ``scheduled=False``.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projector: features ``-> (N, d)`` (SimSiam: 3 layers, BatchNorm on the output too).
        predictor: ``(N, d) -> (N, d)`` (SimSiam: a 2-layer bottleneck).
        loss: a :class:`SimSiamLoss`.
        fixed_predictor_lr: keep the predictor at the base learning rate all run.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        loss: SimSiamLoss | None = None,
        fixed_predictor_lr: bool = True,
    ):
        super().__init__()
        self.online = nn.Sequential(encoder, projector)
        self.predictor = predictor
        self.loss = loss if loss is not None else SimSiamLoss()
        self.fixed_predictor_lr = fixed_predictor_lr

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        views = check_image_views("batch['views']", batch["views"], min_views=2, max_views=2)
        projections = encode_views(self.online, views)  # (2, N, d)
        predictions = encode_views(self.predictor, projections)
        return self.loss(predictions.flatten(0, 1), projections.flip(0).flatten(0, 1))

    def param_groups(self) -> list[ParamGroup]:
        """The predictor at a fixed rate when ``fixed_predictor_lr``."""
        return [ParamGroup("predictor", ("predictor.",), scheduled=False)] if self.fixed_predictor_lr else []

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features: ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)
