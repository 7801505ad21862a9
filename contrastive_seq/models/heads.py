"""Projection and predictor heads: small MLPs on top of an encoder."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Sequential):
    """``num_layers`` linear layers with BatchNorm + ReLU between them: ``(N, in_dim) -> (N, out_dim)``.

    SimCLR's projection head is ``MLPHead(d, d, 128)``; BYOL's projector and
    predictor are ``MLPHead(d, 4096, 256)``; SimSiam's projector is
    ``MLPHead(d, 2048, 2048, num_layers=3, output_batch_norm=True)`` and its
    predictor ``MLPHead(2048, 512, 2048)``; Barlow Twins' and VICReg's
    projectors are ``MLPHead(d, 8192, 8192, num_layers=3)``.

    Args:
        in_dim, hidden_dim, out_dim: widths.
        num_layers: linear layers (>= 1; 1 is a plain linear projection).
        batch_norm: BatchNorm1d after each hidden linear layer.
        output_batch_norm: BatchNorm1d without affine parameters after the last
            linear layer, which then has no bias (SimSiam's projector).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        output_batch_norm: bool = False,
    ):
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim, bias=not output_batch_norm))
        if output_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)
        self.output_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return super().forward(x)


class Prototypes(nn.Module):
    """K learnable unit vectors (SwAV's prototypes): ``(N, d) -> (N, K)`` scores ``z @ C^T``.

    :meth:`normalize_` puts every prototype back on the unit sphere (SwAV does
    it before each step); with L2-normalised ``z`` the scores are cosines.

    Args:
        dim: the embeddings' dimension d.
        count: the number of prototypes K.
    """

    def __init__(self, dim: int, count: int):
        super().__init__()
        for name, value in (("dim", dim), ("count", count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.weight = nn.Parameter(nn.functional.normalize(torch.randn(count, dim), dim=1))

    @torch.no_grad()
    def normalize_(self) -> None:
        """Rescale each prototype to unit length, in place."""
        self.weight.copy_(nn.functional.normalize(self.weight, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, d) -> (N, K)``."""
        return z @ self.weight.T
