"""Time-series encoders with an explicit receptive field, in the spirit of CEBRA's offset models.

Every encoder maps ``receptive_field`` consecutive time points to one
embedding. It is a stack of "valid" (unpadded) 1-D convolutions, so a pass
over ``(N, channels, T)`` gives ``(N, output_dim, T - receptive_field + 1)``
and the receptive field of a chain of convolutions is ``1 + Σ (k_i - 1)``.

Geometry: the embedding of time ``t`` sees the inputs ``t - left_context`` to
``t + right_context``, with ``left_context = receptive_field // 2`` and
``right_context = receptive_field - 1 - left_context`` (so an even receptive
field looks one step further back than ahead, like CEBRA's offsets):

=============== =============== ============ =============
name            receptive_field left_context right_context
=============== =============== ============ =============
``offset1-mlp`` 1               0            0
``offset5``     5               2            2
``offset10``    10              5            4
``offset36``    36              18           17
=============== =============== ============ =============

No BatchNorm and no dropout: an encoder gives the same output in train and
eval mode, and the embedding of one window never depends on the rest of its
batch. Weights are drawn from torch's global generator at construction; seed
it with ``torch.manual_seed`` (or :func:`contrastive_seq.seeding.seed_everything`,
as ``experiments/run.py`` does) for reproducible initialisation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from contrastive_seq.models.names import TIME_SERIES_ENCODER_NAMES
from contrastive_seq.seeding import forked_random_state


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_float_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


class TimeSeriesEncoder(nn.Module):
    """An encoder of ``receptive_field`` consecutive time points; subclasses supply ``network``.

    ``network`` maps ``(N, in_channels, T) -> (N, output_dim, T - receptive_field + 1)``
    (valid convolutions, no padding).

    Attributes:
        receptive_field: time points one embedding sees.
        left_context, right_context: how many of them lie before and after the
            embedded time point (``left + right + 1 == receptive_field``).
        in_channels: input channels (neurons, electrodes, ...).
        output_dim: embedding dimension.
        normalize: embeddings on the unit sphere (``True``) or left in
            Euclidean space (``False``).
    """

    def __init__(self, network: nn.Module, receptive_field: int, in_channels: int, output_dim: int, normalize: bool):
        super().__init__()
        self.receptive_field = _check_positive_int("receptive_field", receptive_field)
        self.in_channels = _check_positive_int("in_channels", in_channels)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        self.left_context = receptive_field // 2
        self.right_context = receptive_field - 1 - self.left_context
        self.network = network

    # one embedding per this many time points (the subsampling encoders override it)
    time_stride = 1

    def _valid_pass(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, T) -> (N, output_dim, T - receptive_field + 1)``, normalised over the embedding."""
        z = self.network(x)
        if not self.normalize:
            return z
        # F.normalize's z / max(|z|, 1e-12) from a sum of squares: its norm over dim 1 of a long (1, D, T)
        # pass (a whole recording) is several times slower than the sum
        return z / z.square().sum(1, keepdim=True).clamp_min(1e-24).sqrt()

    def recording_pass(self, recording: torch.Tensor, chunks: int | None = None) -> torch.Tensor:
        """:meth:`_valid_pass` of one long ``(1, in_channels, T)``, computed as ``chunks`` overlapping pieces of time.

        Same output ``(1, output_dim, T - receptive_field + 1)``: the pieces
        overlap by ``receptive_field - 1`` steps and are stacked in the batch,
        which the CPU convolution kernels spread over threads better than one
        long sequence (forward and backward of offset10, 120 neurons x 8,000
        bins: 11.5 -> 9.6 ms on 2 threads, unchanged on 1). ``chunks``
        defaults to torch's thread count.
        """
        span = recording.shape[2] - self.receptive_field + 1
        chunks = torch.get_num_threads() if chunks is None else chunks
        size = -(-span // max(1, chunks))
        if chunks <= 1 or size >= span:
            return self._valid_pass(recording)
        starts = [min(i * size, span - size) for i in range(-(-span // size))]
        pieces = torch.stack([recording[0, :, start : start + size + self.receptive_field - 1] for start in starts])
        z = self._valid_pass(pieces)  # (pieces, output_dim, size); piece i keeps rows from i * size on
        return torch.cat([z[i, :, i * size - start :] for i, start in enumerate(starts)], dim=1).unsqueeze(0)

    def pass_matches_windows(self, windows: int = 16) -> bool:
        """Whether, in train mode, one :meth:`recording_pass` gives each window's :meth:`forward`.

        Embedding a recording once instead of window by window (the
        estimator's one-pass path) gives the same rows and gradients only
        then. Tried rather than read off the layer types: a copy of the
        encoder in train mode embeds ``windows`` overlapping windows of one
        random sequence both ways, from a fixed seed (the caller's random
        streams and this encoder's buffers are left as they are). Dropout of
        any kind (a module, ``F.dropout`` in a forward, a noise layer) draws
        one mask per window but one for the whole pass, and batch statistics
        (BatchNorm) differ between the two batches, so either fails; no list
        of layer classes, public or private, has to be kept up to date.

        The relative error of the rows is at most 3e-7 for every named
        architecture on the CPU (1 and 2 threads), and 0.26-0.55 for
        ``offset36-model-dropout`` and ``offset36-model-more-dropout``; the
        threshold ``1e-2`` lies between, well above TF32 convolutions' rounding too.
        """
        probe = copy.deepcopy(self).train()
        weight = next(probe.parameters(), None)
        options = {} if weight is None else {"device": weight.device, "dtype": weight.dtype}
        with forked_random_state(0), torch.no_grad():
            sequence = torch.randn(1, self.in_channels, self.receptive_field + windows - 1, **options)
            whole = rearrange(probe.recording_pass(sequence), "1 d t -> t d")
            one_by_one = probe(rearrange(sequence.unfold(2, self.receptive_field, 1), "1 c n r -> n c r"))
        return bool((whole - one_by_one).norm() <= 1e-2 * one_by_one.norm())

    def multiply_adds(self, batch: int, length: int) -> int | None:
        """Multiply-adds of :meth:`_valid_pass` on ``(batch, in_channels, length)``, or ``None`` if unknown.

        Counts the ``Conv1d`` and ``Linear`` layers of ``network`` in
        registration order, each valid convolution shortening time by
        ``kernel_size - 1`` (activations and additions are not counted). An
        encoder with other layers, or strided, dilated or padded convolutions,
        gives ``None``: its cost is not estimated.
        """
        total = 0
        for module in self.network.modules():
            if isinstance(module, nn.Conv1d):
                if module.stride != (1,) or module.dilation != (1,) or module.padding != (0,):
                    return None
                length -= module.kernel_size[0] - 1
                total += batch * length * module.weight.numel()
            elif isinstance(module, nn.Linear):
                total += batch * length * module.weight.numel()
            elif list(module.children()) == [] and not isinstance(module, _PARAMETER_FREE):
                return None
        return total

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Embed training windows: ``(N, in_channels, receptive_field) -> (N, output_dim)``.

        The embedding belongs to the window's time point ``left_context``.
        """
        _check_float_tensor("windows", windows)
        if windows.dim() != 3 or windows.shape[1] != self.in_channels or windows.shape[2] != self.receptive_field:
            raise ValueError(
                f"windows must have shape (N, {self.in_channels}, {self.receptive_field}) "
                f"(batch, in_channels, receptive_field), got {tuple(windows.shape)}"
            )
        return rearrange(self._valid_pass(windows), "n d 1 -> n d")

    def embed_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Embed every time point of a whole recording in one pass: ``(T, in_channels) -> (T, output_dim)``.

        The sequence is padded with ``left_context`` copies of its first time
        point and ``right_context`` copies of its last (replicate padding), so
        row ``t`` equals :meth:`forward` on the window ``x[t - left : t + right + 1]``
        with indices clamped to ``[0, T - 1]``. Any ``T >= 1`` works. Memory grows
        with ``T`` (one activation of ``(hidden, T)`` per layer); split very long
        recordings with overlapping margins of the context if needed.
        """
        _check_float_tensor("x", x)
        if x.dim() != 2 or x.shape[1] != self.in_channels or x.shape[0] < 1:
            raise ValueError(
                f"x must have shape (T, {self.in_channels}) (time, in_channels) with T >= 1, got {tuple(x.shape)}"
            )
        padded = F.pad(rearrange(x, "t c -> 1 c t"), (self.left_context, self.right_context), mode="replicate")
        return rearrange(self._valid_pass(padded), "1 d t -> t d")


# layers without weights that keep the time length: free in :meth:`TimeSeriesEncoder.multiply_adds`
_PARAMETER_FREE = (nn.GELU, nn.Dropout, nn.Dropout1d, nn.Identity)


class _CroppedResidual(nn.Module):
    """``x[..., crop] + GELU(conv(x))`` for a valid convolution that shortens time by ``kernel_size - 1``.

    The skip path is the input cropped to the convolution's output positions
    (``(k - 1) // 2`` from the left, the rest from the right), so the block's
    receptive field is the convolution's own, ``kernel_size``.
    """

    def __init__(self, width: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size)
        self.crop_left = (kernel_size - 1) // 2
        self.crop_right = kernel_size - 1 - self.crop_left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, width, T) -> (N, width, T - kernel_size + 1)``."""
        skip = x[..., self.crop_left : x.shape[-1] - self.crop_right]
        return skip + F.gelu(self.conv(x))


class ConvolutionalEncoder(TimeSeriesEncoder):
    """1-D convolutions with GELU and residual blocks: ``(N, in_channels, T) -> (N, output_dim, T - rf + 1)``.

    Layers and the receptive field each adds (valid convolutions)::

        Conv1d(in_channels, hidden_dim, first_kernel), GELU     + (first_kernel - 1)
        residual_blocks x [x + GELU(Conv1d(hidden, hidden, 3))] + 2 each
        Conv1d(hidden_dim, output_dim, last_kernel)              + (last_kernel - 1)

    so ``receptive_field = first_kernel + 2 * residual_blocks + last_kernel - 1``.

    Args:
        in_channels, output_dim, hidden_dim: widths.
        residual_blocks: kernel-3 residual blocks between the first and last convolution (>= 0).
        first_kernel, last_kernel: kernel sizes of the first and last convolution (>= 1).
        normalize: unit-norm embeddings.
    """

    RESIDUAL_KERNEL = 3

    def __init__(
        self,
        in_channels: int,
        output_dim: int,
        hidden_dim: int,
        residual_blocks: int,
        first_kernel: int = 2,
        last_kernel: int = 3,
        normalize: bool = True,
    ):
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("output_dim", output_dim)
        _check_positive_int("hidden_dim", hidden_dim)
        _check_positive_int("residual_blocks", residual_blocks, minimum=0)
        _check_positive_int("first_kernel", first_kernel)
        _check_positive_int("last_kernel", last_kernel)
        network = nn.Sequential(
            nn.Conv1d(in_channels, hidden_dim, first_kernel),
            nn.GELU(),
            *(_CroppedResidual(hidden_dim, self.RESIDUAL_KERNEL) for _ in range(residual_blocks)),
            nn.Conv1d(hidden_dim, output_dim, last_kernel),
        )
        receptive_field = 1 + (first_kernel - 1) + residual_blocks * (self.RESIDUAL_KERNEL - 1) + (last_kernel - 1)
        super().__init__(network, receptive_field, in_channels, output_dim, normalize)


class _PointwiseMLP(nn.Module):
    """The same MLP applied to every time point: ``(N, in_dim, T) -> (N, out_dim, T)``."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim, T) -> (N, out_dim, T)``."""
        return rearrange(self.layers(rearrange(x, "n c t -> n t c")), "n t d -> n d t")


class PointwiseMLPEncoder(TimeSeriesEncoder):
    """An MLP on single time points (receptive field 1): ``(N, in_channels, 1) -> (N, output_dim)``.

    ``Linear(in_channels, hidden_dim), GELU``, then ``hidden_layers - 1`` times
    ``Linear(hidden_dim, hidden_dim), GELU``, then ``Linear(hidden_dim, output_dim)``.

    Args:
        in_channels, output_dim, hidden_dim: widths.
        hidden_layers: hidden layers (>= 1).
        normalize: unit-norm embeddings.
    """

    def __init__(
        self, in_channels: int, output_dim: int, hidden_dim: int, hidden_layers: int = 3, normalize: bool = True
    ):
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("output_dim", output_dim)
        _check_positive_int("hidden_dim", hidden_dim)
        _check_positive_int("hidden_layers", hidden_layers)
        layers: list[nn.Module] = [nn.Linear(in_channels, hidden_dim), nn.GELU()]
        for _ in range(hidden_layers - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim, output_dim))
        super().__init__(_PointwiseMLP(nn.Sequential(*layers)), 1, in_channels, output_dim, normalize)


# builders called as builder(in_channels, output_dim, hidden_dim, normalize=...), one per name, in its order
TIME_SERIES_ENCODERS: dict[str, Callable[..., TimeSeriesEncoder]] = dict(
    zip(
        TIME_SERIES_ENCODER_NAMES,
        (
            # offset1-mlp, receptive field 1: one time point
            PointwiseMLPEncoder,
            # offset5, receptive field 1 + (2 - 1) + 2 * 1 + (2 - 1) = 5
            partial(ConvolutionalEncoder, residual_blocks=1, first_kernel=2, last_kernel=2),
            # offset10, receptive field 1 + (2 - 1) + 2 * 3 + (3 - 1) = 10
            partial(ConvolutionalEncoder, residual_blocks=3, first_kernel=2, last_kernel=3),
            # offset36, receptive field 1 + (2 - 1) + 2 * 16 + (3 - 1) = 36
            partial(ConvolutionalEncoder, residual_blocks=16, first_kernel=2, last_kernel=3),
        ),
        strict=True,
    )
)


def make_time_series_encoder(
    name: str, in_channels: int, output_dim: int, hidden_dim: int = 32, normalize: bool = True
) -> TimeSeriesEncoder:
    """Build the encoder called ``name`` (a key of :data:`TIME_SERIES_ENCODERS`).

    Returns a :class:`TimeSeriesEncoder` mapping ``(N, in_channels, receptive_field) -> (N, output_dim)``.

    Raises:
        ValueError: for an unknown ``name`` (the message lists the choices) or a bad width.
    """
    if not isinstance(name, str) or name not in TIME_SERIES_ENCODERS:
        raise ValueError(f"name must be one of {sorted(TIME_SERIES_ENCODERS)}, got {name!r}")
    return TIME_SERIES_ENCODERS[name](in_channels, output_dim, hidden_dim, normalize=normalize)


class _DroppedResidual(_CroppedResidual):
    """``x[..., crop] + GELU(conv(Dropout1d(x)))``: a residual block whose convolution sees channel dropout."""

    def __init__(self, width: int, kernel_size: int, dropout: float):
        super().__init__(width, kernel_size)
        self.dropout = nn.Dropout1d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, width, T) -> (N, width, T - kernel_size + 1)``."""
        skip = x[..., self.crop_left : x.shape[-1] - self.crop_right]
        return skip + F.gelu(self.conv(self.dropout(x)))


class DropoutConvolutionalEncoder(TimeSeriesEncoder):
    """:class:`ConvolutionalEncoder` with channel dropout (``Dropout1d``), active in train mode only.

    ``Conv1d(in, hidden, 2), Dropout1d, GELU``, ``residual_blocks`` kernel-3
    residual blocks (with ``dropout_in_blocks`` their convolutions see
    ``Dropout1d`` too), ``Conv1d(hidden, output_dim, 3)``: receptive field
    ``2 + 2 * residual_blocks + 2``. Unlike the other encoders it differs
    between train and eval mode; embeddings are taken in eval mode.

    Args:
        in_channels, output_dim, hidden_dim: widths.
        residual_blocks: kernel-3 residual blocks (>= 0).
        dropout: the probability of zeroing a channel, in ``[0, 1)``.
        dropout_in_blocks: drop channels before every residual convolution as well.
        normalize: unit-norm embeddings.
    """

    def __init__(
        self,
        in_channels: int,
        output_dim: int,
        hidden_dim: int,
        residual_blocks: int,
        dropout: float = 0.1,
        dropout_in_blocks: bool = False,
        normalize: bool = True,
    ):
        _check_positive_int("hidden_dim", hidden_dim)
        _check_positive_int("residual_blocks", residual_blocks, minimum=0)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        kernel = ConvolutionalEncoder.RESIDUAL_KERNEL
        blocks = (
            _DroppedResidual(hidden_dim, kernel, dropout) if dropout_in_blocks else _CroppedResidual(hidden_dim, kernel)
            for _ in range(residual_blocks)
        )
        network = nn.Sequential(
            nn.Conv1d(in_channels, hidden_dim, 2),
            nn.Dropout1d(dropout),
            nn.GELU(),
            *blocks,
            nn.Conv1d(hidden_dim, output_dim, 3),
        )
        super().__init__(network, 2 + residual_blocks * (kernel - 1) + 2, in_channels, output_dim, normalize)


class _ConvWithSubsampledInput(nn.Module):
    """``cat(conv(x), x[..., ::stride])`` along channels: a strided convolution that keeps the raw input too.

    ``(N, C, T) -> (N, hidden + C, (T - kernel) // stride + 1)``; output step
    ``j`` holds the convolution over ``x[..., j*stride : j*stride + kernel]``
    and the input sample ``x[..., j*stride]``.
    """

    def __init__(self, in_channels: int, hidden_dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, hidden_dim, kernel_size, stride=stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T) -> (N, hidden + C, (T - kernel) // stride + 1)``."""
        convolved = self.conv(x)
        return torch.cat([convolved, x[..., :: self.stride][..., : convolved.shape[-1]]], dim=1)


class SubsamplingEncoder(TimeSeriesEncoder):
    """One embedding per 4 time points (``time_stride = 4``), as CEBRA's ``-4x-subsample`` models.

    Layers (stride 2 twice, then valid convolutions)::

        cat(Conv1d(in, hidden, 4, stride=2)(x), x[..., ::2])    (hidden + in channels)
        Conv1d(hidden + in, hidden, 3, stride=2), GELU
        residual_blocks x [x + GELU(Conv1d(hidden, hidden, 3))]
        Conv1d(hidden, output_dim, last_kernel)

    A window of ``receptive_field = 4 + 4 + 4 * (2 * residual_blocks + last_kernel - 1)``
    time points gives one embedding (40 for 3 blocks and kernel 3, 20 for 1
    block and kernel 2). :meth:`embed_sequence` on ``(T, C)`` returns
    ``(ceil(T / 4), D)``: row ``j`` embeds time ``4 j`` from its replicate-padded window.

    Args:
        in_channels, output_dim, hidden_dim: widths.
        residual_blocks: kernel-3 residual blocks at the subsampled rate (>= 0).
        last_kernel: kernel of the last convolution (>= 1).
        normalize: unit-norm embeddings.
    """

    time_stride = 4

    def __init__(
        self,
        in_channels: int,
        output_dim: int,
        hidden_dim: int,
        residual_blocks: int,
        last_kernel: int,
        normalize: bool = True,
    ):
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("hidden_dim", hidden_dim)
        _check_positive_int("residual_blocks", residual_blocks, minimum=0)
        _check_positive_int("last_kernel", last_kernel)
        kernel = ConvolutionalEncoder.RESIDUAL_KERNEL
        network = nn.Sequential(
            _ConvWithSubsampledInput(in_channels, hidden_dim, 4, stride=2),
            nn.Conv1d(hidden_dim + in_channels, hidden_dim, 3, stride=2),
            nn.GELU(),
            *(_CroppedResidual(hidden_dim, kernel) for _ in range(residual_blocks)),
            nn.Conv1d(hidden_dim, output_dim, last_kernel),
        )
        # kernel 4 at stride 1, kernel 3 at stride 2 (+ 2 * 2); then one step spans 4 inputs: + 4 * (k - 1) each
        receptive_field = 4 + 2 * 2 + 4 * (residual_blocks * (kernel - 1) + last_kernel - 1)
        super().__init__(network, receptive_field, in_channels, output_dim, normalize)
