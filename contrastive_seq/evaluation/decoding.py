"""Decoding behaviour from embeddings with k nearest neighbours (scikit-learn).

Continuous behaviour (position, speed, ...) is decoded with a
``KNeighborsRegressor`` and scored by R² and the median absolute error;
discrete behaviour (trial type, direction, ...) with a distance-weighted
``KNeighborsClassifier`` and scored by accuracy. :func:`knn_decode` picks by
the labels' dtype: floating point is continuous, integer or bool is discrete.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import median_absolute_error, r2_score
from sklearn.neighbors import KNeighborsRegressor

from contrastive_seq.evaluation.probes import as_numpy, knn_accuracy

ArrayLike = torch.Tensor | np.ndarray


def _check_split(
    split: str, embeddings: ArrayLike, labels: ArrayLike, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` ("train"/"test") embeddings ``(n, dim)`` and labels ``(n,)`` or ``(n, L)`` as arrays."""
    x, y = as_numpy(embeddings), as_numpy(labels)
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"{split}_embeddings must have shape (n, dim) with n >= 1, got {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{split}_embeddings must have dim {dim} like train_embeddings, got shape {x.shape}")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise ValueError(f"{split}_labels must have shape ({len(x)},) or ({len(x)}, L), got {y.shape}")
    return x, y


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return k


def is_discrete(labels: ArrayLike, name: str = "labels") -> bool:
    """Whether ``labels`` are discrete (integer or bool dtype) rather than continuous (floating point).

    Raises:
        TypeError: for any other dtype (strings, objects, complex), naming the argument ``name``.
    """
    dtype = as_numpy(labels).dtype
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must have an integer, bool or floating-point dtype, got {dtype}")
    return dtype.kind != "f"


def knn_regression_scores(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    k: int = 10,
    metric: str = "cosine",
) -> dict[str, float]:
    """Decode continuous labels with a distance-weighted kNN regressor.

    Embeddings are ``(n, dim)``; labels ``(n,)`` or ``(n, L)`` (several
    variables are averaged uniformly); ``k`` is capped at the training rows.

    Returns:
        ``{"r2": R² on the test split, "median_absolute_error": median |prediction - label|}``.
    """
    _check_k(k)
    train_x, train_y = _check_split("train", train_embeddings, train_labels)
    test_x, test_y = _check_split("test", test_embeddings, test_labels, dim=train_x.shape[1])
    regressor = KNeighborsRegressor(n_neighbors=min(k, len(train_x)), metric=metric, weights="distance")
    predicted = regressor.fit(train_x, train_y).predict(test_x)
    return {
        "r2": float(r2_score(test_y, predicted)),
        "median_absolute_error": float(median_absolute_error(test_y, predicted)),
    }


def knn_decode(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
    k: int = 10,
    metric: str = "cosine",
) -> dict[str, float]:
    """kNN-decode behaviour from embeddings, regression or classification by the labels' dtype.

    Embeddings are ``(n, dim)``. Floating-point labels ``(n,)`` or ``(n, L)``
    give :func:`knn_regression_scores` (``{"r2", "median_absolute_error"}``);
    integer or bool labels ``(n,)`` give ``{"accuracy"}`` from
    :func:`~contrastive_seq.evaluation.probes.knn_accuracy`. ``metric`` is any
    scikit-learn metric name ("cosine" for embeddings on the sphere,
    "euclidean" otherwise).

    Raises:
        ValueError: for mismatched shapes, naming the argument, or ``k`` < 1.
        TypeError: for labels that are neither numbers nor bools, or train and
            test labels of different kinds.
    """
    _check_k(k)
    discrete = is_discrete(train_labels, "train_labels")
    if is_discrete(test_labels, "test_labels") != discrete:
        raise TypeError(
            "train_labels and test_labels must both be discrete (integer/bool) or both continuous (float), "
            f"got dtypes {as_numpy(train_labels).dtype} and {as_numpy(test_labels).dtype}"
        )
    if not discrete:
        return knn_regression_scores(train_embeddings, train_labels, test_embeddings, test_labels, k, metric)
    train_x, train_y = _check_split("train", train_embeddings, train_labels)
    test_x, test_y = _check_split("test", test_embeddings, test_labels, dim=train_x.shape[1])
    if train_y.ndim != 1 or test_y.ndim != 1:
        raise ValueError(f"discrete labels must have shape (n,), got {train_y.shape} and {test_y.shape}")
    return {"accuracy": knn_accuracy(train_x, train_y, test_x, test_y, k=k, metric=metric)}
