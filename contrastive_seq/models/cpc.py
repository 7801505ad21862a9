"""CPC models: strided convolutional encoders, autoregressive context models, per-step predictors.

Every encoder states its geometry: ``stride`` (input time points per output
frame) and ``receptive_field`` (input time points behind one frame), and
``num_frames(length)`` is how many frames a crop of ``length`` gives
(valid convolutions, no padding: ``(length - receptive_field) // stride + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from contrastive_seq.models.names import CONTEXT_MODELS, PREDICTORS

# CPC_audio's waveform encoder (Riviere et al. 2020, after van den Oord et al. 2018):
#            layer:   1    2   3   4   5
CPC_AUDIO_KERNELS = (10, 8, 4, 4, 4)
CPC_AUDIO_STRIDES = (5, 4, 2, 2, 2)  # total stride 5*4*2*2*2 = 160: one frame per 10 ms at 16 kHz


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each frame separately: ``(batch, channels, time)`` in and out.

    Unlike BatchNorm it never mixes frames or sequences, so no statistic of the
    future (or of a negative) leaks into a frame (CPC_audio's choice).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")


class StridedConvEncoder(nn.Module):
    """Strided 1-d convolutions, each followed by :class:`ChannelNorm` and ReLU.

    ``forward(x)``: ``(batch, time)`` (one channel) or ``(batch, time, in_channels)``
    -> ``(batch, frames, output_dim)`` with ``frames = num_frames(time)``.

    Args:
        in_channels: input channels (1 for a waveform).
        kernels, strides: one per layer.
        hidden_dim: channels of every layer (also ``output_dim``).

    Attributes:
        stride: product of the strides.
        receptive_field: input time points that one output frame sees.
    """

    def __init__(self, in_channels: int, kernels: Sequence[int], strides: Sequence[int], hidden_dim: int = 256):
        super().__init__()
        _check_int("in_channels", in_channels)
        _check_int("hidden_dim", hidden_dim)
        if len(kernels) == 0 or len(kernels) != len(strides):
            raise ValueError(f"kernels and strides must be non-empty and of one length, got {kernels} and {strides}")
        for i, (kernel, stride) in enumerate(zip(kernels, strides)):
            _check_int(f"kernels[{i}]", kernel)
            _check_int(f"strides[{i}]", stride)
        layers: list[nn.Module] = []
        channels = in_channels
        for kernel, stride in zip(kernels, strides):
            layers += [nn.Conv1d(channels, hidden_dim, kernel, stride), ChannelNorm(hidden_dim), nn.ReLU()]
            channels = hidden_dim
        self.network = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.output_dim = hidden_dim
        self.stride = math.prod(strides)
        jumps = [math.prod(strides[:i]) for i in range(len(strides))]
        self.receptive_field = 1 + sum((kernel - 1) * jump for kernel, jump in zip(kernels, jumps))

    def num_frames(self, length: int) -> int:
        """Frames produced from ``length`` input time points (0 when shorter than the receptive field)."""
        return max(0, (length - self.receptive_field) // self.stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() == 2 and self.in_channels == 1:
            x = x.unsqueeze(-1)
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, time, {self.in_channels}), got {tuple(x.shape)}")
        if x.shape[1] < self.receptive_field:
            raise ValueError(
                f"x has {x.shape[1]} time points, fewer than the encoder's receptive field {self.receptive_field}"
            )
        return rearrange(self.network(rearrange(x, "b t c -> b c t")), "b c t -> b t c")


def waveform_encoder(hidden_dim: int = 256) -> StridedConvEncoder:
    """CPC_audio's raw-waveform encoder: five layers, total stride 160, receptive field 465 samples."""
    return StridedConvEncoder(1, CPC_AUDIO_KERNELS, CPC_AUDIO_STRIDES, hidden_dim)


def series_encoder(
    in_channels: int, hidden_dim: int = 64, kernel_size: int = 3, num_layers: int = 3, stride: int = 1
) -> StridedConvEncoder:
    """An encoder for multichannel time series ``(batch, time, in_channels)``: ``num_layers`` convolutions.

    ``stride`` applies to the first layer only (downsampling), the others have stride 1.
    """
    _check_int("num_layers", num_layers)
    return StridedConvEncoder(
        in_channels, [kernel_size] * num_layers, [stride] + [1] * (num_layers - 1), hidden_dim
    )


class RecurrentContext(nn.Module):
    """A GRU or LSTM over frames (causal): ``(batch, frames, input_dim) -> (batch, frames, output_dim)``."""

    def __init__(self, kind: str, input_dim: int, output_dim: int, num_layers: int = 1):
        super().__init__()
        cell = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = cell(input_dim, output_dim, num_layers=num_layers, batch_first=True)
        self.output_dim = output_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.rnn(z)[0]


class CausalTransformerContext(nn.Module):
    """A Transformer encoder with a causal mask: frame t attends to frames <= t only.

    ``(batch, frames, input_dim) -> (batch, frames, output_dim)``. Positions
    come from a learned embedding of up to ``max_frames`` frames.
    """

    def __init__(
        self, input_dim: int, output_dim: int, num_layers: int = 2, num_heads: int = 4, max_frames: int = 1024
    ):
        super().__init__()
        if output_dim % num_heads:
            raise ValueError(f"output_dim={output_dim} must be divisible by num_heads={num_heads}")
        self.input = nn.Linear(input_dim, output_dim)
        self.position = nn.Embedding(max_frames, output_dim)
        layer = nn.TransformerEncoderLayer(output_dim, num_heads, 4 * output_dim, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output_dim = output_dim
        self.max_frames = max_frames

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        frames = z.shape[1]
        if frames > self.max_frames:
            raise ValueError(f"z has {frames} frames, more than max_frames={self.max_frames} of this context model")
        mask = nn.Transformer.generate_square_subsequent_mask(frames, device=z.device)
        x = self.input(z) + self.position(torch.arange(frames, device=z.device))
        return self.transformer(x, mask=mask, is_causal=True)


def make_context_model(name: str, input_dim: int, output_dim: int = 256, num_layers: int = 1) -> nn.Module:
    """An autoregressive context model by name: ``"gru"``, ``"lstm"`` or ``"transformer"`` (causal)."""
    if name not in CONTEXT_MODELS:
        raise ValueError(f"context model must be one of {CONTEXT_MODELS}, got {name!r}")
    _check_int("input_dim", input_dim)
    _check_int("output_dim", output_dim)
    _check_int("num_layers", num_layers)
    if name == "transformer":
        return CausalTransformerContext(input_dim, output_dim, num_layers)
    return RecurrentContext(name, input_dim, output_dim, num_layers)


class StepPredictors(nn.Module):
    """One prediction of the future frame per step k = 1..K from each context vector.

    ``forward(c)``: ``(batch, frames, context_dim) -> (K, batch, frames, target_dim)``;
    entry ``[k - 1, b, t]`` predicts frame ``t + k`` of sequence b.

    ``"bilinear"``: a linear map W_k per step, so that the dot product of the
    prediction with a frame is CPC's bilinear score ``z^T W_k c``.
    ``"mlp"``: a two-layer MLP per step.

    The last layer of every head starts at ``init_scale`` times PyTorch's
    default initialisation, so that the first scores carry almost no
    information and the CPC loss starts near ln(1 + negatives).
    """

    def __init__(
        self, context_dim: int, target_dim: int, num_steps: int, kind: str = "bilinear", init_scale: float = 0.1
    ):
        super().__init__()
        _check_int("num_steps", num_steps)
        if kind not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {kind!r}")

        def head() -> nn.Module:
            if kind == "bilinear":
                return nn.Linear(context_dim, target_dim, bias=False)
            return nn.Sequential(nn.Linear(context_dim, context_dim), nn.ReLU(), nn.Linear(context_dim, target_dim))

        self.heads = nn.ModuleList(head() for _ in range(num_steps))
        with torch.no_grad():
            for head_module in self.heads:
                last = head_module if kind == "bilinear" else head_module[-1]
                last.weight.mul_(init_scale)
        self.num_steps = num_steps

    def forward(self, c: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.stack([head(c) for head in self.heads])
