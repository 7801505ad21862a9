"""DINO's projection head (Caron et al. 2021): an MLP, an L2-normalised bottleneck, a weight-normalised output layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from contrastive_seq.models.heads import MLPHead


class DINOHead(nn.Module):
    """``(N, in_dim) -> (N, out_dim)``: MLP to a bottleneck, L2 normalisation, then a weight-normalised linear layer.

    The last layer is ``W = g · v / ||v||`` per output row (no bias) with the
    gain g initialised to 1; with ``norm_last_layer`` (DINO's default) g stays
    fixed at 1, so every output is a cosine similarity to a learned prototype.
    DINO uses GELU in the MLP; this head reuses :class:`MLPHead` (ReLU).

    Args:
        in_dim: backbone feature dimension.
        out_dim: K, the number of prototypes (65,536 for ImageNet).
        hidden_dim: MLP width (2048 in DINO).
        bottleneck_dim: width before the last layer (256 in DINO).
        num_layers: linear layers of the MLP (3 in DINO).
        batch_norm: BatchNorm in the MLP (DINO: off for ViTs).
        norm_last_layer: keep the gain of the last layer fixed at 1.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        self.mlp = MLPHead(in_dim, hidden_dim, bottleneck_dim, num_layers=num_layers, batch_norm=batch_norm)
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be a positive int, got {out_dim!r}")
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            gain.fill_(1.0)
        gain.requires_grad_(not norm_last_layer)
        self.output_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim) -> (N, out_dim)``."""
        return self.last_layer(F.normalize(self.mlp(features), dim=-1))
