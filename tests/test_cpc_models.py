"""CPC encoders state their geometry, frames never mix, context models are causal."""

import pytest
import torch

from contrastive_seq.models.cpc import StepPredictors, make_context_model, series_encoder, waveform_encoder


def test_waveform_encoder_geometry():
    encoder = waveform_encoder(hidden_dim=16)
    assert encoder.stride == 160 and encoder.receptive_field == 465
    for length in (465, 624, 625, 2000):
        assert encoder(torch.randn(1, length)).shape == (1, encoder.num_frames(length), 16)
    assert encoder.num_frames(625) == 2 and encoder.num_frames(624) == 1
    with pytest.raises(ValueError, match="receptive field 465"):
        encoder(torch.randn(1, 400))


def test_frame_sees_only_its_receptive_field():
    torch.manual_seed(0)
    encoder = series_encoder(2, hidden_dim=8, kernel_size=3, num_layers=3, stride=2)
    x = torch.randn(3, 40, 2)
    changed = x.clone()
    changed[:, encoder.receptive_field :] += 5.0  # after frame 0's receptive field
    changed[1] = torch.randn(40, 2)  # another sequence of the batch
    a, b = encoder(x), encoder(changed)
    assert torch.allclose(a[0, 0], b[0, 0]) and torch.allclose(a[2, 0], b[2, 0])
    assert not torch.allclose(a[0, -1], b[0, -1])


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer"])
def test_context_models_are_causal(name):
    torch.manual_seed(0)
    context = make_context_model(name, 6, 8, num_layers=2).eval()
    z = torch.randn(2, 12, 6)
    changed = z.clone()
    changed[:, 7:] = torch.randn(2, 5, 6)
    a, b = context(z), context(changed)
    assert a.shape == (2, 12, 8)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_step_predictors_and_bad_names():
    predictions = StepPredictors(8, 5, num_steps=3, kind="mlp")(torch.randn(2, 4, 8))
    assert predictions.shape == (3, 2, 4, 5)
    with pytest.raises(ValueError, match="context model must be one of"):
        make_context_model("rnn", 4)
    with pytest.raises(ValueError, match="predictor must be one of"):
        StepPredictors(4, 4, 2, kind="conv")
