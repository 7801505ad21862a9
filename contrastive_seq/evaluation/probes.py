"""Downstream probes on frozen embeddings: kNN and linear classifiers (scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``x`` as a NumPy array of the same shape (a tensor is detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def knn_accuracy(
    train_embeddings: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_embeddings: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    k: int = 10,
    metric: str = "cosine",
) -> float:
    """Accuracy of a distance-weighted k-nearest-neighbour classifier.

    Embeddings are ``(n, dim)``, labels ``(n,)``; ``k`` is capped at the number of training rows.
    """
    train_x = as_numpy(train_embeddings)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_x)), metric=metric, weights="distance")
    knn.fit(train_x, as_numpy(train_labels))
    return float(knn.score(as_numpy(test_embeddings), as_numpy(test_labels)))


def few_label_knn_accuracy(
    train_embeddings: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_embeddings: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    labels_per_class: int,
    repeats: int = 10,
    seed: int = 0,
    metric: str = "cosine",
) -> float:
    """Mean 1-NN accuracy when only ``labels_per_class`` training rows per class keep their label.

    The labelled rows are drawn ``repeats`` times with a seeded generator; the
    same draws are used for any embedding, so two embeddings are compared on
    the same labelled subsets.
    """
    train_x, train_y = as_numpy(train_embeddings), as_numpy(train_labels)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        chosen = np.concatenate(
            [rng.choice(np.flatnonzero(train_y == c), labels_per_class, replace=False) for c in np.unique(train_y)]
        )
        scores.append(knn_accuracy(train_x[chosen], train_y[chosen], test_embeddings, test_labels, k=1, metric=metric))
    return float(np.mean(scores))


def linear_probe_accuracy(
    train_embeddings: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_embeddings: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    max_iter: int = 2000,
) -> float:
    """Accuracy of a standardised multinomial logistic regression on frozen embeddings."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(as_numpy(train_embeddings), as_numpy(train_labels))
    return float(probe.score(as_numpy(test_embeddings), as_numpy(test_labels)))
