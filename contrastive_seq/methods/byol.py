"""BYOL (Grill et al. 2020): an online network predicts its momentum copy's projection of the other view."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.byol import BYOLLoss
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.ema import EMACopy
from contrastive_seq.views.image import check_image_views


class BYOL(Method):
    """Online ``predictor(projector(encoder(x)))`` regresses the target ``projector(encoder(x'))``, both ways.

    Batch: ``{"views": (2, N, C, H, W)}``, two augmentations of each image
    (BYOL's asymmetric recipes: :func:`~contrastive_seq.views.image.byol_augmentations`).
    The loss is :class:`BYOLLoss` averaged over both directions (view 1
    predicts view 2 and view 2 predicts view 1), so it lies in [0, 4].
    The target network is an :class:`EMACopy` of ``encoder + projector``,
    updated after every step; it needs no negatives, so any batch size works.

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``.
        projector: features ``-> (N, d)``.
        predictor: ``(N, d) -> (N, d)``, online only.
        loss: a :class:`BYOLLoss`.
        base_momentum, final_momentum, momentum_steps: the target's momentum
            schedule (BYOL: 0.996 -> 1 over the whole run, ``momentum_steps=None``:
            the run's length, which the Trainer gives).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        loss: BYOLLoss | None = None,
        base_momentum: float = 0.996,
        final_momentum: float = 1.0,
        momentum_steps: int | None = None,
    ):
        super().__init__()
        self.online = nn.Sequential(encoder, projector)
        self.predictor = predictor
        self.target = EMACopy(self.online, base_momentum, final_momentum, momentum_steps)
        self.loss = loss if loss is not None else BYOLLoss()

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        views = check_image_views("batch['views']", batch["views"], min_views=2, max_views=2)
        online = nn.Sequential(self.online, self.predictor)
        predictions = encode_views(online, views).flatten(0, 1)  # (2N, d): view 1 then view 2
        targets = encode_views(self.target, views.flip(0)).flatten(0, 1)  # the other view of each row
        return self.loss(predictions, targets)

    def after_step(self, step: int) -> None:
        """Move the target network towards the online one."""
        self.target.update(self.online, step)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Online encoder features: ``(N, C, H, W) -> (N, output_dim)``."""
        return self.online[0](x)
