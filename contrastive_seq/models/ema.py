"""A momentum (EMA) copy of a network: MoCo's key encoder, BYOL's target, DINO's teacher.

After each optimiser step the copy's parameters θ_t follow the trained
network's θ_s:

    θ_t <- m θ_t + (1 - m) θ_s

with m rising from ``base_momentum`` to ``final_momentum`` on a cosine over
``total_steps`` steps (BYOL, Grill et al. 2020):

    m(k) = final - (final - base) (1 + cos(pi min(k, K) / K)) / 2

Buffers (BatchNorm running statistics) are not averaged: the copy keeps the
ones its own forward passes produce.
"""

from __future__ import annotations

import copy
import math
import operator

import torch
from torch import nn


def _check_momentum(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """``m(step)``: ``base`` at step 0, ``final`` at ``total_steps`` and after, a half cosine in between."""
    progress = min(step, total_steps) / total_steps
    return final - (final - base) * (1 + math.cos(math.pi * progress)) / 2


class EMACopy(nn.Module):
    """A frozen deep copy of ``source`` that follows it by an exponential moving average.

    Calling it runs the copy without building a graph. Its parameters do not
    require gradients, so no optimiser ever touches them.

    Args:
        source: the trained network (copied at construction).
        base_momentum: m at step 0, in [0, 1].
        final_momentum: m at ``total_steps``, in [0, 1].
        total_steps: length of the cosine ramp in steps; ``None``: the run's
            length, once :meth:`set_total_steps` gives it (a Trainer does, through
            its method), and m at ``base_momentum`` until then. For a constant
            momentum set ``final_momentum = base_momentum``.
    """

    def __init__(
        self,
        source: nn.Module,
        base_momentum: float = 0.99,
        final_momentum: float = 1.0,
        total_steps: int | None = None,
    ):
        super().__init__()
        self.base_momentum = _check_momentum("base_momentum", base_momentum)
        self.final_momentum = _check_momentum("final_momentum", final_momentum)
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1
        ):
            raise ValueError(f"total_steps must be None or a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        self.follows_run_length = total_steps is None
        self.module = copy.deepcopy(source).requires_grad_(False)

    def set_total_steps(self, total_steps: int) -> None:
        """Ramp over the run's ``total_steps`` when built without a length of its own; else keep that length."""
        if self.follows_run_length:
            self.total_steps = total_steps

    def momentum_at(self, step: int) -> float:
        """The momentum m used by the update after optimiser step ``step`` (0-based)."""
        step = operator.index(step)
        if self.total_steps is None:
            return self.base_momentum
        return cosine_momentum(step, self.total_steps, self.base_momentum, self.final_momentum)

    @torch.no_grad()
    def blend(self, source: nn.Module, momentum: float) -> None:
        """``θ_t <- m θ_t + (1 - m) θ_s`` for every parameter, in order; ``source`` must match the copy."""
        momentum = _check_momentum("momentum", momentum)
        targets, sources = list(self.module.parameters()), list(source.parameters())
        if [t.shape for t in targets] != [s.shape for s in sources]:
            raise ValueError("source must have the parameters (shapes, order) of the network this EMACopy copied")
        torch._foreach_mul_(targets, momentum)  # one fused call per list (as timm and lightly do)
        torch._foreach_add_(targets, [value.detach() for value in sources], alpha=1 - momentum)

    def update(self, source: nn.Module, step: int) -> float:
        """Blend ``source`` in with ``momentum_at(step)``; returns the momentum used."""
        momentum = self.momentum_at(step)
        self.blend(source, momentum)
        return momentum

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The copy's output for ``inputs``, without a graph."""
        with torch.no_grad():
            return self.module(*inputs)
