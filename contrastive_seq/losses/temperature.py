"""Temperature of the loss core: fixed, or learnable within bounds."""

from __future__ import annotations

import math

import torch
from torch import nn

from contrastive_seq.losses.validation import check_positive_number


class Temperature(nn.Module):
    """A temperature tau, stored as the log of the logit scale 1/tau (as in CLIP).

    Args:
        initial: starting temperature, > 0.
        learnable: whether tau is a trained parameter.
        bounds: ``(min, max)`` temperature; the logit scale is clamped to
            ``[1/max, 1/min]`` in the forward pass (CLIP: min 0.01, i.e. scale <= 100).
    """

    def __init__(self, initial: float, learnable: bool = False, bounds: tuple[float, float] = (0.01, 100.0)):
        super().__init__()
        check_positive_number("temperature", initial)
        low, high = (check_positive_number("temperature bounds", b) for b in bounds)
        if not low <= initial <= high:
            raise ValueError(f"temperature must lie within bounds {bounds}, got {initial}")
        self.bounds = (low, high)
        log_scale = torch.tensor(-math.log(initial))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def learnable(self) -> bool:
        """Whether the temperature is trained."""
        return isinstance(self.log_scale, nn.Parameter)

    def scale(self) -> torch.Tensor:
        """The logit scale 1/tau, a scalar tensor clamped to the bounds."""
        low, high = self.bounds
        return self.log_scale.exp().clamp(1.0 / high, 1.0 / low)

    def forward(self) -> torch.Tensor:
        """The temperature tau as a scalar tensor."""
        return 1.0 / self.scale()

    def extra_repr(self) -> str:  # noqa: D102
        return f"tau={float(self()):.4g}, learnable={self.learnable}, bounds={self.bounds}"
