"""Goodness of fit in bits: the formula, CEBRA's own function, and a fitted estimator's history and score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.evaluation.goodness_of_fit import (
    goodness_of_fit_history,
    goodness_of_fit_score,
    infonce_to_goodness_of_fit,
    negatives_per_reference,
)


@pytest.fixture(scope="module")
def fitted() -> tuple[ContrastiveEmbedding, np.ndarray, np.ndarray]:
    recording = synthetic_place_cells(num_neurons=12, num_timepoints=800, seed=0)
    X, y = recording.neural.numpy(), recording.continuous.numpy()
    estimator = ContrastiveEmbedding(
        output_dimension=3, batch_size=64, max_iterations=20, device="cpu", random_state=0
    ).fit(X, y)
    return estimator, X, y


def test_formula_written_out():
    losses = np.array([math.log(512), math.log(512) - math.log(2), 0.0])
    bits = infonce_to_goodness_of_fit(losses, 512)
    np.testing.assert_allclose(bits, [0.0, 1.0, 9.0], atol=1e-12)
    assert infonce_to_goodness_of_fit(math.log(8) * 2 - 0.5, 8, terms=2) == pytest.approx(0.5 / math.log(2))
    assert isinstance(infonce_to_goodness_of_fit(1.0, 4), float)


def test_same_value_as_cebra():
    metrics = pytest.importorskip("cebra.integrations.sklearn.metrics")
    losses = np.linspace(4.0, 6.5, 11)
    for batch_size in (64, 512, 4096):
        expected = metrics.infonce_to_goodness_of_fit(losses, batch_size=batch_size, num_sessions=1)
        np.testing.assert_allclose(infonce_to_goodness_of_fit(losses, batch_size), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_negatives": 0}, "num_negatives"),
        ({"num_negatives": 8, "terms": 0}, "terms"),
        ({"num_negatives": 2.0}, "num_negatives"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        infonce_to_goodness_of_fit(1.0, **kwargs)
    with pytest.raises(ValueError, match="infonce"):
        infonce_to_goodness_of_fit(np.array([1.0, np.nan]), 8)


def test_history_of_a_fit_starts_near_chance(fitted):
    estimator, _, _ = fitted
    assert negatives_per_reference(estimator) == 64
    steps, bits = goodness_of_fit_history(estimator)
    losses = np.array([record["loss"] for record in estimator.history_])
    np.testing.assert_allclose(bits, (math.log(64) - losses) / math.log(2))
    assert steps[0] == 1 and len(steps) == len(estimator.history_)
    # an untrained encoder scores its positive like any negative: within a bit of chance
    assert abs(bits[0]) < 1.0


def test_score_on_data_matches_the_estimators_loss(fitted):
    estimator, X, y = fitted
    expected = (math.log(64) + estimator.score(X, y, num_batches=3)) / math.log(2)
    assert goodness_of_fit_score(estimator, X, y, num_batches=3) == pytest.approx(expected)
    with pytest.raises(ValueError, match="num_batches"):
        goodness_of_fit_score(estimator, X, y, num_batches=0)


def test_unfitted_estimator_is_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        goodness_of_fit_history(ContrastiveEmbedding())
