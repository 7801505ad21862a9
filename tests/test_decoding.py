"""kNN decoding of behaviour and consistency of embeddings across runs and sessions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_seq.evaluation import (
    align_by_behaviour,
    consistency_across_sessions,
    consistency_matrix,
    knn_decode,
    linear_consistency,
)

N_TRAIN, N_TEST = 800, 200


def decode(embedding: np.ndarray, labels: np.ndarray, **kwargs) -> dict[str, float]:
    """knn_decode with the first N_TRAIN rows for training and the rest for testing."""
    return knn_decode(embedding[:N_TRAIN], labels[:N_TRAIN], embedding[N_TRAIN:], labels[N_TRAIN:], **kwargs)


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


# --- decoding ---------------------------------------------------------------------------------------


def test_continuous_label_decoded_from_itself_and_not_from_noise():
    rng = np.random.default_rng(0)
    position = rng.uniform(0, 1, N_TRAIN + N_TEST)
    informative = np.stack([position, np.zeros_like(position)], axis=1)
    noise = rng.normal(size=(N_TRAIN + N_TEST, 2))
    good = decode(informative, position, metric="euclidean")
    bad = decode(noise, position, metric="euclidean")
    assert set(good) == {"r2", "median_absolute_error"}
    assert good["r2"] > 0.99
    assert good["median_absolute_error"] < 0.01  # neighbours lie within ~k / N_TRAIN of the label
    assert bad["r2"] < 0.1
    assert bad["median_absolute_error"] > 0.15  # about the median |a - b| of two uniforms, 1 - 1/sqrt(2)


def test_several_continuous_variables_and_torch_inputs():
    rng = np.random.default_rng(1)
    behaviour = rng.uniform(-1, 1, size=(N_TRAIN + N_TEST, 2)).astype(np.float32)
    embedding = torch.from_numpy(behaviour @ random_rotation(2, rng).astype(np.float32))
    labels = torch.from_numpy(behaviour)
    scores = decode(embedding, labels, metric="euclidean")
    assert scores["r2"] > 0.98


def test_default_cosine_metric_decodes_an_angle_on_the_circle():
    angle = np.random.default_rng(8).uniform(0, 3, N_TRAIN + N_TEST)  # less than a full turn: no wrap-around
    on_circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    assert decode(on_circle, angle)["r2"] > 0.99


def test_discrete_label_decoded_from_one_hot_and_not_from_noise():
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 4, N_TRAIN + N_TEST)
    one_hot = np.eye(4)[classes] + 0.05 * rng.normal(size=(N_TRAIN + N_TEST, 4))
    noise = rng.normal(size=(N_TRAIN + N_TEST, 4))
    good = decode(one_hot, classes)
    bad = decode(noise, classes)
    assert set(good) == {"accuracy"}
    assert good["accuracy"] == 1.0
    assert bad["accuracy"] < 0.4  # chance is 0.25


def test_bool_labels_are_discrete():
    labels = np.arange(100) % 2 == 0
    embedding = labels[:, None].astype(float) + np.array([[1.0, 0.0]])
    assert set(knn_decode(embedding, labels, embedding, labels, k=1)) == {"accuracy"}


def test_bad_decoding_input_is_rejected():
    x, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="train_labels must have shape"):
        knn_decode(x, y[:5], x, y)
    with pytest.raises(ValueError, match="test_embeddings must have dim 2"):
        knn_decode(x, y, np.zeros((10, 3)), y)
    with pytest.raises(ValueError, match="k must be a positive int"):
        knn_decode(x, y, x, y, k=0)
    with pytest.raises(TypeError, match="train_labels must have an integer, bool or floating-point dtype"):
        knn_decode(x, np.array(["a"] * 10), x, np.array(["a"] * 10))
    with pytest.raises(TypeError, match="must both be discrete"):
        knn_decode(x, y, x, np.zeros(10, dtype=int))


# --- consistency ------------------------------------------------------------------------------------


def r2_from_formula(source: np.ndarray, target: np.ndarray) -> float:
    """Least squares with an intercept column, then 1 - SS_res / SS_tot per target dimension, averaged."""
    design = np.concatenate([source, np.ones((len(source), 1))], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = ((target - design @ coefficients) ** 2).sum(axis=0)
    total = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1 - residual / total))


def test_linear_consistency_matches_the_formula():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(300, 3))
    target = source @ rng.normal(size=(3, 2)) + rng.normal(size=(300, 2))
    assert linear_consistency(source, target) == pytest.approx(r2_from_formula(source, target), abs=1e-10)


def test_rotation_is_consistent_and_independent_noise_is_not():
    rng = np.random.default_rng(4)
    embedding = rng.normal(size=(2000, 3))
    rotated = embedding @ random_rotation(3, rng) + 5.0
    noise = rng.normal(size=(2000, 3))
    assert linear_consistency(embedding, rotated) > 0.999999
    assert linear_consistency(embedding, noise) < 0.01  # in-sample R² of unrelated data is about dim / T


def test_consistency_matrix_entries_and_diagonal():
    rng = np.random.default_rng(5)
    runs = [rng.normal(size=(200, 3)) for _ in range(3)]
    runs[1] = runs[0] @ random_rotation(3, rng)
    matrix = consistency_matrix([torch.from_numpy(r) for r in runs])
    assert matrix.shape == (3, 3)
    assert np.isnan(np.diag(matrix)).all()
    for i in range(3):
        for j in range(3):
            if i != j:
                assert matrix[i, j] == pytest.approx(linear_consistency(runs[i], runs[j]))
    assert matrix[0, 1] > 0.999999 and matrix[1, 0] > 0.999999
    assert matrix[0, 2] < 0.1


def test_align_by_behaviour_is_the_mean_per_bin():
    rng = np.random.default_rng(6)
    behaviour = rng.uniform(0, 1, 500)
    embedding = rng.normal(size=(500, 2))
    edges = np.linspace(0, 1.5, 7)  # the last two bins hold no sample
    aligned = align_by_behaviour(embedding, behaviour, edges)
    assert aligned.shape == (6, 2)
    for b in range(6):
        inside = (behaviour >= edges[b]) & ((behaviour < edges[b + 1]) | (b == 5))
        if inside.any():
            np.testing.assert_allclose(aligned[b], embedding[inside].mean(axis=0))
        else:
            assert np.isnan(aligned[b]).all()


def test_sessions_sharing_behaviour_are_consistent_and_noise_is_not():
    rng = np.random.default_rng(7)

    def session(length: int) -> tuple[np.ndarray, np.ndarray]:
        position = rng.uniform(0, 1, length)
        latent = np.stack([np.cos(3 * position), np.sin(3 * position), position], axis=1)
        return latent @ random_rotation(3, rng) + 0.05 * rng.normal(size=(length, 3)), position

    (a, pos_a), (b, pos_b) = session(3000), session(5000)
    noise_c = rng.normal(size=(4000, 3))
    pos_c = rng.uniform(0, 1, 4000)
    matrix = consistency_across_sessions([a, b, noise_c], [pos_a, pos_b, pos_c], num_bins=50)
    assert matrix.shape == (3, 3)
    assert matrix[0, 1] > 0.98 and matrix[1, 0] > 0.98
    assert matrix[0, 2] < 0.3 and matrix[2, 0] < 0.3  # bin means of noise: R² about dim / bins


def test_bad_consistency_input_is_rejected():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="source and target must have the same number of rows"):
        linear_consistency(x, x[:5])
    with pytest.raises(ValueError, match=r"embeddings\[1\] must have 10 rows"):
        consistency_matrix([x, x[:5]])
    with pytest.raises(ValueError, match="at least 2"):
        consistency_matrix([x])
    with pytest.raises(ValueError, match="behaviours must overlap"):
        consistency_across_sessions([x, x], [np.zeros(10), np.ones(10)], num_bins=4)
    with pytest.raises(ValueError, match=r"behaviour must be finite floats of shape \(10,\)"):
        consistency_across_sessions([x, x], [np.zeros(10), np.ones(9)])
    with pytest.raises(ValueError, match="num_bins"):
        consistency_across_sessions([x, x], [np.zeros(10), np.zeros(10)], num_bins=1)
