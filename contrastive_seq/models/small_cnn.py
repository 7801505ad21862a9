"""A small convolutional image encoder for low-resolution images (digits, Fashion-MNIST)."""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Conv-BN-ReLU stages, each halving the resolution but the first, then global average pooling.

    ``(N, in_channels, H, W) -> (N, widths[-1])``; works for any H, W >= 1.

    Args:
        in_channels: image channels (1 for grey).
        widths: channels of each stage; ``output_dim`` is the last.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.output_dim = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, output_dim)``."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"images must have shape (N, {self.in_channels}, H, W), got {tuple(images.shape)}"
            )
        return self.features(images).mean(dim=(2, 3))
