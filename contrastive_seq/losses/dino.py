"""DINO's self-distillation loss (Caron et al. 2021).

The student sees Vs crops of each of N images, the teacher the first Vt of
them (the global crops), so student view j and teacher view i are the same
crop iff ``i == j``. With K output dimensions, a centre ``c`` (K,) and
temperatures ``tau_s``, ``tau_t(step)``:

    P_t[i] = softmax((t_i - c) / tau_t)          (no gradient)
    log P_s[j] = log_softmax(s_j / tau_s)
    H(i, j) = mean_n ( - sum_k P_t[i, n, k] log P_s[j, n, k] )
    loss = mean over the Vt * (Vs - 1) pairs (i, j) with i != j of H(i, j)

``tau_t`` rises linearly from ``warmup_teacher_temperature`` at step 0 to
``teacher_temperature`` at ``warmup_steps`` and stays there. After the loss is
computed (in training mode) the centre moves towards the teacher's batch mean:

    c <- m * c + (1 - m) * mean_{i, n} t[i, n]

where the batch mean is averaged over ranks with :func:`all_reduce_mean`, so
it is the global batch mean when ranks hold equal batches. The loss itself
needs no communication: each rank averages its own samples.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_embeddings, check_positive_number


def _check_step(name: str, value: object) -> int:
    """Require an integer >= 0 (a step or a number of steps)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class DINOLoss(nn.Module):
    """DINO's cross-entropy of the centred, sharpened teacher against the student.

    ``forward(student (Vs, N, K), teacher (Vt, N, K), step=0) -> LossOutput``
    with ``1 <= Vt <= Vs`` and ``Vs >= 2``. ``teacher`` is detached inside.
    Parts: ``teacher_entropy`` (mean entropy of the teacher's distributions),
    ``kl`` (the loss minus the teacher entropy: the mean KL divergence from
    teacher to student over the pairs, since every teacher view enters Vs - 1
    pairs), and ``teacher_temperature`` (``tau_t(step)``).

    The centre is the buffer ``center`` (K,), starting at zero; it is updated
    by every forward call in training mode and left alone in eval mode.

    Args:
        out_dim: K, the number of output dimensions (prototypes).
        student_temperature: ``tau_s`` > 0.
        teacher_temperature: ``tau_t`` after the warm-up, > 0.
        warmup_teacher_temperature: ``tau_t`` at step 0, > 0.
        warmup_steps: length of the linear warm-up in steps (0: none).
        center_momentum: ``m`` in ``[0, 1)``.
    """

    center: torch.Tensor

    def __init__(
        self,
        out_dim: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
    ):
        super().__init__()
        if isinstance(out_dim, bool) or not isinstance(out_dim, int):
            raise TypeError(f"out_dim must be an int, got {type(out_dim).__name__}")
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        self.out_dim = out_dim
        self.student_temperature = check_positive_number("student_temperature", student_temperature)
        self.teacher_temperature = check_positive_number("teacher_temperature", teacher_temperature)
        self.warmup_teacher_temperature = check_positive_number(
            "warmup_teacher_temperature", warmup_teacher_temperature
        )
        self.warmup_steps = _check_step("warmup_steps", warmup_steps)
        if isinstance(center_momentum, bool) or not isinstance(center_momentum, (int, float)):
            raise TypeError(f"center_momentum must be a number, got {type(center_momentum).__name__}")
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must lie in [0, 1), got {center_momentum}")
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(out_dim))

    def teacher_temperature_at(self, step: int) -> float:
        """``tau_t(step)``: linear from the warm-up value at 0 to the final value at ``warmup_steps``, then flat."""
        step = _check_step("step", step)
        if step >= self.warmup_steps:
            return self.teacher_temperature
        fraction = step / self.warmup_steps
        return self.warmup_teacher_temperature + fraction * (self.teacher_temperature - self.warmup_teacher_temperature)

    def _check_views(self, name: str, views: object) -> None:
        """Require a finite ``(V >= 1, N >= 1, K = out_dim)`` floating tensor."""
        check_embeddings(name, views, rank=3)
        if views.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one sample, shape (V, N >= 1, K), got {tuple(views.shape)}")
        if views.shape[2] != self.out_dim:
            raise ValueError(
                f"{name} must have K = out_dim = {self.out_dim} outputs, shape (V, N, {self.out_dim}), "
                f"got {tuple(views.shape)}"
            )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, step: int = 0) -> LossOutput:
        """Loss of ``student (Vs, N, K)`` against ``teacher (Vt, N, K)`` at training ``step``."""
        self._check_views("student", student)
        self._check_views("teacher", teacher)
        student_views, samples = student.shape[:2]
        teacher_views = teacher.shape[0]
        if student_views < 2:
            raise ValueError(
                f"student must hold at least 2 views (V >= 2) so that a teacher view meets another crop, "
                f"got shape {tuple(student.shape)}"
            )
        if teacher.shape[1] != samples:
            raise ValueError(
                f"teacher must have N = {samples} samples like student, got shape {tuple(teacher.shape)}"
            )
        if teacher_views > student_views:
            raise ValueError(
                f"teacher must have at most Vs = {student_views} views (the student's first views), "
                f"got shape {tuple(teacher.shape)}"
            )
        teacher_temperature = self.teacher_temperature_at(step)
        dtype = torch.promote_types(student.dtype, torch.float32)
        with torch.no_grad():
            teacher = teacher.detach().to(dtype)
            teacher_log_probs = F.log_softmax((teacher - self.center.to(dtype)) / teacher_temperature, dim=-1)
            teacher_probs = teacher_log_probs.exp()
            teacher_entropy = -(teacher_probs * teacher_log_probs).sum(-1).mean()
        student_log_probs = F.log_softmax(student.to(dtype) / self.student_temperature, dim=-1)
        # cross[i, j] = mean over samples of the cross-entropy of teacher view i and student view j
        cross = -torch.einsum("ink,jnk->ij", teacher_probs, student_log_probs) / samples
        same_crop = torch.eye(teacher_views, student_views, dtype=torch.bool, device=cross.device)
        loss = cross.masked_fill(same_crop, 0).sum() / (teacher_views * (student_views - 1))
        if self.training:
            self._update_center(teacher)
        parts = {
            "teacher_entropy": teacher_entropy,
            "kl": loss.detach() - teacher_entropy,
            "teacher_temperature": torch.tensor(teacher_temperature, dtype=dtype, device=loss.device),
        }
        return LossOutput(loss, parts)

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        """``center <- m * center + (1 - m) * b``, b = mean of ``teacher (Vt, N, K)`` over views, samples, ranks."""
        batch_center = distributed.all_reduce_mean(teacher.mean(dim=(0, 1)))
        self.center.mul_(self.center_momentum).add_(batch_center.to(self.center.dtype), alpha=1 - self.center_momentum)
