"""Time-series encoders: receptive field measured by perturbation, sequence pass vs windows, shapes, errors."""

from __future__ import annotations

import pytest
import torch

from torch.utils.flop_counter import FlopCounterMode

from contrastive_seq.models import TIME_SERIES_ENCODERS, ConvolutionalEncoder, make_time_series_encoder
from contrastive_seq.models.architectures import ARCHITECTURES, make_architecture
from contrastive_seq.models.timeseries import TimeSeriesEncoder

NAMES = sorted(TIME_SERIES_ENCODERS)
CHANNELS, DIM, HIDDEN = 3, 4, 8
# the receptive fields the issue asks for, one per name
RECEPTIVE_FIELDS = {"offset1-mlp": 1, "offset5": 5, "offset10": 10, "offset36": 36}


def build(name: str, normalize: bool = True, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_time_series_encoder(name, CHANNELS, DIM, HIDDEN, normalize=normalize).double()


def sequence(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(length, CHANNELS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_attributes_and_context_split(name):
    encoder = build(name)
    assert encoder.receptive_field == RECEPTIVE_FIELDS[name]
    assert encoder.left_context + encoder.right_context + 1 == encoder.receptive_field
    assert encoder.left_context == encoder.receptive_field // 2  # an even field looks one step further back
    assert (encoder.in_channels, encoder.output_dim, encoder.normalize) == (CHANNELS, DIM, True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("normalize", [True, False])
def test_receptive_field_measured_by_perturbing_one_sample(name, normalize):
    encoder = build(name, normalize)
    margin = 2
    x = sequence(encoder.receptive_field + 3 * margin)
    t0 = margin + encoder.right_context + 1
    # output t sees inputs t - left .. t + right, so input t0 reaches outputs t0 - right .. t0 + left
    expected = torch.zeros(len(x), dtype=torch.bool)
    expected[t0 - encoder.right_context : t0 + encoder.left_context + 1] = True
    direction = torch.zeros_like(x)
    direction[t0] = torch.randn(CHANNELS, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    with torch.no_grad():
        moved = (encoder.embed_sequence(x + direction) != encoder.embed_sequence(x)).any(dim=1)
    # A finite perturbation leaves every output outside the field bit-for-bit unchanged. Inside it, through
    # 18 layers the far edge's influence is ~1e-18, below what a finite difference of O(1) values resolves,
    # so an infinitesimal perturbation is read instead: output t changes when d out[t] / d x[t0] != 0.
    x.requires_grad_(True)
    out = encoder.embed_sequence(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    candidates = range(t0 - encoder.right_context - margin, t0 + encoder.left_context + margin + 1)
    changed = moved.clone()
    for t in candidates:
        changed[t] = torch.autograd.grad(out[t] @ weights[t], x, retain_graph=True)[0][t0].ne(0).any()
    assert not (moved & ~expected).any()
    assert changed.sum().item() == encoder.receptive_field
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("length", [1, 7, 50])
def test_embed_sequence_equals_forward_on_unfolded_clamped_windows(name, length):
    encoder = build(name)
    x = sequence(length)
    left, right = encoder.left_context, encoder.right_context
    # replicate padding from its definition: indices clamped to the recording
    padded = x[torch.arange(-left, length + right).clamp(0, length - 1)]
    windows = padded.unfold(0, encoder.receptive_field, 1)  # strided view (time, channels, window)
    assert windows.shape == (length, CHANNELS, encoder.receptive_field)
    with torch.no_grad():
        whole = encoder.embed_sequence(x)
        windowed = encoder(windows)
    assert whole.shape == (length, DIM)
    torch.testing.assert_close(whole, windowed, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_normalisation(name):
    windows = torch.randn(16, CHANNELS, RECEPTIVE_FIELDS[name], dtype=torch.float64)
    with torch.no_grad():
        on_sphere = build(name, normalize=True)(windows)
        euclidean = build(name, normalize=False)(windows)
    assert on_sphere.shape == euclidean.shape == (16, DIM)
    torch.testing.assert_close(on_sphere.norm(dim=1), torch.ones(16, dtype=torch.float64))
    assert not torch.allclose(euclidean.norm(dim=1), torch.ones(16, dtype=torch.float64))
    # same weights, so the sphere embedding is the Euclidean one's direction
    torch.testing.assert_close(on_sphere, euclidean / euclidean.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("name", NAMES)
def test_seeded_initialisation_is_reproducible(name):
    same = [build(name, seed=3).state_dict() for _ in range(2)]
    other = build(name, seed=4).state_dict()
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
    assert any(not torch.equal(same[0][k], other[k]) for k in same[0])


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter_and_train_equals_eval(name):
    encoder = build(name)
    windows = torch.randn(8, CHANNELS, encoder.receptive_field, dtype=torch.float64)
    target = torch.randn(8, DIM, dtype=torch.float64)
    encoder.train()
    out = encoder(windows)
    (out * target).sum().backward()
    for param_name, param in encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(windows), out.detach())


def test_convolutional_receptive_field_formula_matches_a_valid_pass():
    encoder = ConvolutionalEncoder(2, 3, 5, residual_blocks=4, first_kernel=3, last_kernel=4)
    assert encoder.receptive_field == 1 + 2 + 2 * 4 + 3
    with torch.no_grad():
        out = encoder.network(torch.randn(1, 2, 40))
    assert out.shape == (1, 3, 40 - encoder.receptive_field + 1)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_multiply_adds_equal_torchs_flop_count_of_a_valid_pass(name):
    """The estimator picks windows or a whole-recording pass by this count; torch's counter is the reference."""
    encoder = make_architecture(name, 7, 3, 16)
    for batch, length in ((5, encoder.receptive_field), (1, encoder.receptive_field + 50)):
        counted = encoder.multiply_adds(batch, length)
        if encoder.time_stride != 1:  # strided convolutions: not estimated
            assert counted is None
            continue
        with FlopCounterMode(display=False) as flops, torch.no_grad():
            encoder._valid_pass(torch.randn(batch, 7, length))
        assert counted == flops.get_total_flops() // 2  # one multiply-add is two flops


@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("extra", [0, 1, 45])
def test_a_recording_pass_in_overlapping_chunks_equals_one_pass(chunks, extra):
    """Same rows and parameter gradients as one pass, for chunk counts that divide the span and that do not
    (in float64, so that only a wrong row or a missed overlap could tell them apart)."""
    torch.manual_seed(0)
    encoder = make_time_series_encoder("offset10", 6, 3, 8).double()
    recording = torch.randn(1, 6, encoder.receptive_field + 40 + extra, dtype=torch.float64)
    whole = encoder._valid_pass(recording)
    chunked = encoder.recording_pass(recording, chunks)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(whole)
    expected = torch.autograd.grad((whole * weights).sum(), list(encoder.parameters()))
    gradients = torch.autograd.grad((chunked * weights).sum(), list(encoder.parameters()))
    for got, want in zip(gradients, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as error:
        make_time_series_encoder("offset7", CHANNELS, DIM)
    assert all(name in str(error.value) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_rejected_with_the_expected_shape(name):
    encoder = build(name)
    rf = encoder.receptive_field
    with pytest.raises(ValueError, match=rf"windows must have shape \(N, {CHANNELS}, {rf}\)"):
        encoder(torch.randn(4, CHANNELS + 1, rf, dtype=torch.float64))
    with pytest.raises(ValueError, match="windows must have shape"):
        encoder(torch.randn(4, CHANNELS, rf + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="windows must have shape"):
        encoder(torch.randn(CHANNELS, rf, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"x must have shape \(T, {CHANNELS}\)"):
        encoder.embed_sequence(torch.randn(0, CHANNELS, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must have shape"):
        encoder.embed_sequence(torch.randn(10, CHANNELS + 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        encoder.embed_sequence(torch.ones(10, CHANNELS, dtype=torch.long))
    with pytest.raises(TypeError, match="windows must be a torch.Tensor"):
        encoder([[0.0]])


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"in_channels": 0}, "in_channels"), ({"output_dim": 2.5}, "output_dim"), ({"hidden_dim": True}, "hidden_dim")],
)
def test_bad_widths_are_rejected(kwargs, argument):
    for name in NAMES:
        arguments = {"in_channels": CHANNELS, "output_dim": DIM, "hidden_dim": HIDDEN, **kwargs}
        with pytest.raises(ValueError, match=argument):
            make_time_series_encoder(name, **arguments)


class _FunctionalDropoutConv(torch.nn.Module):
    """A convolution whose input sees dropout written as ``F.dropout`` in its forward: no dropout module anywhere."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, p: float):
        super().__init__()
        self.conv, self.p = torch.nn.Conv1d(in_channels, out_channels, kernel_size), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.nn.functional.dropout(x, self.p, self.training))


def _encoder(*layers: torch.nn.Module, receptive_field: int = 5) -> TimeSeriesEncoder:
    return TimeSeriesEncoder(torch.nn.Sequential(*layers), receptive_field, 12, 4, normalize=True)


@pytest.mark.parametrize(
    "layers,matches",
    [
        (lambda: [_FunctionalDropoutConv(12, 4, 5, 0.2)], False),
        (lambda: [torch.nn.Conv1d(12, 8, 3), torch.nn.BatchNorm1d(8), torch.nn.Conv1d(8, 4, 3)], False),
        (lambda: [torch.nn.Conv1d(12, 8, 3), torch.nn.AlphaDropout(0.1), torch.nn.Conv1d(8, 4, 3)], False),
        (lambda: [torch.nn.Conv1d(12, 8, 3), torch.nn.Dropout(0.0), torch.nn.Conv1d(8, 4, 3)], True),
        (lambda: [_FunctionalDropoutConv(12, 4, 5, 0.2).eval()], False),  # train mode is what is tried
    ],
    ids=["functional-dropout", "batch-norm", "alpha-dropout", "dropout-p0", "dropout-module-in-eval-mode"],
)
def test_one_pass_matches_the_windows_only_without_per_window_randomness_or_batch_statistics(layers, matches):
    """The rule is tried, not read off layer types: dropout in any form and batch statistics fail it."""
    torch.manual_seed(0)
    encoder = _encoder(*layers())
    buffers = {name: value.clone() for name, value in encoder.named_buffers()}
    before = torch.get_rng_state()
    assert encoder.pass_matches_windows() is matches
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is untouched
    assert all(torch.equal(value, buffers[name]) for name, value in encoder.named_buffers())  # BatchNorm's too


def test_the_estimator_keeps_windows_for_dropout_written_as_a_function():
    """``F.dropout`` inside a block, where no module is a dropout class: one pass would share its masks.

    The pass is cheaper here (300 time points against 3 x 100 windows of 5), so only the rule keeps windows.
    """
    from contrastive_seq import ContrastiveEmbedding
    from contrastive_seq.data.recording import Recording

    torch.manual_seed(0)
    recording = Recording(torch.rand(300, 12))
    model = ContrastiveEmbedding(batch_size=100, device="cpu")
    dropout, plain = _encoder(_FunctionalDropoutConv(12, 4, 5, 0.2)), _encoder(torch.nn.Conv1d(12, 4, 5))
    assert dropout.multiply_adds(1, 300) <= dropout.multiply_adds(300, 5)
    assert not model._whole_pass_pays(dropout, recording)
    assert model._whole_pass_pays(plain, recording)
