"""Jacobian attribution: against autograd's Jacobian window by window, and recovering known driving neurons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.evaluation.attribution import (
    attribution_map,
    inverse_jacobian_attribution,
    jacobian_attribution,
)
from contrastive_seq.models.timeseries import make_time_series_encoder


def test_jacobian_against_autograd_window_by_window():
    torch.manual_seed(0)
    encoder = make_time_series_encoder("offset5", 4, 3, 8)
    x = torch.randn(12, 4)
    got = jacobian_attribution(encoder, x, batch_size=5)
    assert got.shape == (12, 3, 4)
    left, right = encoder.left_context, encoder.right_context
    for t in range(12):
        rows = torch.arange(t - left, t + right + 1).clamp(0, 11)  # replicate padding at the ends
        window = x[rows].T.contiguous()  # (C, W)
        jac = torch.autograd.functional.jacobian(lambda w: encoder(w.unsqueeze(0))[0], window)  # (D, C, W)
        np.testing.assert_allclose(got[t], jac.sum(-1).numpy(), rtol=1e-5, atol=1e-6)


def test_inverse_is_the_pseudo_inverse_of_each_time_point():
    jac = np.random.default_rng(0).normal(size=(5, 3, 7)).astype(np.float32)
    inverse = inverse_jacobian_attribution(jac)
    assert inverse.shape == (5, 3, 7)
    for t in range(5):
        # J pinv(J) = identity on the embedding when J (D x C) has full row rank
        np.testing.assert_allclose(jac[t] @ inverse[t].T, np.eye(3), atol=1e-4)


def test_bad_input_is_named():
    encoder = make_time_series_encoder("offset1-mlp", 4, 2, 8)
    with pytest.raises(ValueError, match=r"X must have shape \(time, 4\)"):
        jacobian_attribution(encoder, np.zeros((10, 5)))
    with pytest.raises(ValueError, match="NaN"):
        jacobian_attribution(encoder, np.full((10, 4), np.nan))
    with pytest.raises(ValueError, match="method"):
        attribution_map(encoder, np.zeros((10, 4)), method="gradient")
    with pytest.raises(TypeError, match="model"):
        jacobian_attribution(torch.nn.Linear(4, 2), np.zeros((10, 4)))


def driven_recording(seed: int, driving: int = 10, noise: int = 20, length: int = 2000):
    """Place cells (driven by position) mixed with Poisson neurons of matching rates that ignore it.

    Returns ``(X (length, driving + noise), y (length, 2), is_driving (driving + noise,))``.
    """
    recording = synthetic_place_cells(num_neurons=driving, num_timepoints=length, seed=seed)
    rng = np.random.default_rng(seed)
    rates = np.resize(recording.neural.numpy().mean(0), noise)
    X = np.concatenate([recording.neural.numpy(), rng.poisson(rates, size=(length, noise)).astype(np.float32)], 1)
    order = rng.permutation(driving + noise)
    return X[:, order], recording.continuous.numpy(), order < driving


@pytest.fixture(scope="module")
def driven_fit() -> tuple[ContrastiveEmbedding, np.ndarray, np.ndarray]:
    """offset10 trained 200 steps on position, on :func:`driven_recording` of seed 0."""
    X, y, is_driving = driven_recording(seed=0)
    estimator = ContrastiveEmbedding(
        output_dimension=3, batch_size=128, max_iterations=200, learning_rate=3e-3, device="cpu", random_state=0
    ).fit(X, y)
    return estimator, X, is_driving


@pytest.mark.parametrize("method", ["jacobian", "inverse"])
def test_driving_neurons_are_recovered(driven_fit, method):
    """10 place cells among 20 position-blind neurons of matching rates.

    Measured AUC of the attribution's neuron ranking (seeds 0-3 on 1 thread, 0-1 on 2 threads):
    0.99-1.00 for both methods; an untrained encoder scores 0.35-0.72. Threshold 0.9.
    """
    estimator, X, is_driving = driven_fit
    result = attribution_map(estimator, X, method=method)
    assert result["per_time"].shape == (2000, 3, 30) and result["mean"].shape == (3, 30)
    assert roc_auc_score(is_driving, result["neuron"]) >= 0.9
