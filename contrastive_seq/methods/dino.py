"""DINO (Caron et al. 2021): self-distillation from a momentum teacher over multi-crop views."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.dino import DINOLoss
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method, check_freeze_steps, drop_gradients
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.ema import EMACopy
from contrastive_seq.views.image import check_image_views


class DINO(Method):
    """A student ``head(encoder(x))`` on every crop matches the teacher's centred, sharpened output on the global crops.

    Batch: ``{"views": (G, N, C, H, W)}`` global crops (G >= 2) and optionally
    ``{"local_views": (L, N, C, h, w)}`` local crops at their own resolution
    (:class:`~contrastive_seq.views.multicrop.MultiCropViews`). The student sees
    all G + L crops, the teacher (an :class:`EMACopy` of ``encoder + head``)
    the global ones; :class:`DINOLoss` scores every pair of a teacher crop and
    another student crop and keeps the centre. The teacher temperature
    warm-up follows the number of steps done, kept in the buffer ``steps_done``
    (saved in checkpoints).

    Args:
        encoder: images ``(N, C, H, W) -> (N, encoder.output_dim)``, any H, W the crops have.
        head: features ``-> (N, K)``, e.g. a :class:`~contrastive_seq.models.dino_head.DINOHead`.
        loss: a :class:`DINOLoss` with ``out_dim = K``.
        freeze_last_layer_steps: steps during which the head's ``last_layer`` (if
            it has one) gets no update (DINO: the first epoch), through
            :meth:`before_optimizer_step`.
        base_momentum, final_momentum, momentum_steps: the teacher's momentum schedule
            (DINO: 0.996 -> 1 over the whole run, ``momentum_steps=None``:
            the run's length, which the Trainer gives).
    """

    steps_done: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        loss: DINOLoss,
        base_momentum: float = 0.996,
        final_momentum: float = 1.0,
        momentum_steps: int | None = None,
        freeze_last_layer_steps: int = 0,
    ):
        super().__init__()
        self.freeze_last_layer_steps = check_freeze_steps("freeze_last_layer_steps", freeze_last_layer_steps)
        self.student = nn.Sequential(encoder, head)
        self.teacher = EMACopy(self.student, base_momentum, final_momentum, momentum_steps)
        self.loss = loss
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        global_views = check_image_views("batch['views']", batch["views"], min_views=2)
        student = encode_views(self.student, global_views)
        if "local_views" in batch:
            local_views = check_image_views("batch['local_views']", batch["local_views"])
            if local_views.shape[1] != global_views.shape[1]:
                raise ValueError(
                    f"batch['local_views'] must hold N = {global_views.shape[1]} images like batch['views'], "
                    f"got {tuple(local_views.shape)}"
                )
            student = torch.cat([student, encode_views(self.student, local_views)])
        teacher = encode_views(self.teacher, global_views)
        return self.loss(student, teacher, step=int(self.steps_done))

    def before_optimizer_step(self, step: int) -> None:
        """No update of the head's last layer during the first ``freeze_last_layer_steps`` steps."""
        last_layer = getattr(self.student[1], "last_layer", None)
        if step < self.freeze_last_layer_steps and last_layer is not None:
            drop_gradients(last_layer)

    def after_step(self, step: int) -> None:
        """Move the teacher towards the student; count the step for the teacher temperature."""
        self.teacher.update(self.student, step)
        self.steps_done.fill_(step + 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher backbone features (DINO evaluates the teacher): ``(N, C, H, W) -> (N, output_dim)``."""
        return self.teacher.module[0](x)
