"""Null controls for behaviour decoding: the same fit on labels that no longer match the neurons.

A contrastive embedding trained with behaviour labels can decode that
behaviour for reasons that have nothing to do with the neurons (the labels
shape the embedding, and a kNN decoder finds them again). Two controls tell:

- ``"shuffled"``: the training labels permuted in time (the neurons keep
  their order), so label and activity are paired at random;
- ``"shifted"``: the training labels rolled circularly by a random lag
  between 10 % and 90 % of the training length, which keeps the labels'
  own temporal structure but breaks their alignment with the activity.

Each control fits a fresh copy of the estimator (``sklearn.base.clone``, same
hyper-parameters and seed) on the first ``1 - test_fraction`` of the
recording with the altered labels; the *true* labels are then decoded from
its embedding with kNN, trained on the training part and scored on the held-out
last part. A real fit is worth reporting only where it decodes clearly
better than both controls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from contrastive_seq.evaluation.decoding import knn_decode
from contrastive_seq.evaluation.probes import as_numpy

CONTROLS = ("shuffled", "shifted")


def null_labels(y: np.ndarray, control: str, rng: np.random.Generator) -> np.ndarray:
    """``y (time, ...)`` permuted in time (``"shuffled"``) or rolled by 10-90 % of its length (``"shifted"``)."""
    if control == "shuffled":
        return y[rng.permutation(len(y))]
    if control == "shifted":
        lag = int(rng.integers(max(1, len(y) // 10), max(2, (9 * len(y)) // 10)))
        return np.roll(y, lag, axis=0)
    raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")


def null_control_decoding(
    estimator: Any,
    X: Any,
    y: Any,
    controls: Sequence[str] = CONTROLS,
    test_fraction: float = 0.2,
    k: int = 10,
    metric: str = "cosine",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Decoding of the real fit beside the same fit on null labels, in one call.

    Args:
        estimator: an unfitted (or fitted: it is not touched) estimator with
            ``fit(X, y)`` and ``transform(X)``, e.g. :class:`~contrastive_seq.estimator.ContrastiveEmbedding`.
        X: ``(time, neurons)`` neural data.
        y: ``(time,)`` or ``(time, k)`` behaviour labels, floating (decoded by
            regression) or integer (by classification).
        controls: which null controls to run, from :data:`CONTROLS`.
        test_fraction: the held-out last part of the recording, in (0, 1).
        k, metric: the kNN decoder's neighbours and metric.
        seed: draws the permutation and the lag.

    Returns:
        ``{"real": scores, "shuffled": scores, "shifted": scores}`` (the requested
        controls), each the :func:`~contrastive_seq.evaluation.decoding.knn_decode`
        scores of the true held-out labels: ``{"r2", "median_absolute_error"}`` or
        ``{"accuracy"}``. :func:`format_decoding_table` prints it.
    """
    neural, labels = as_numpy(X), as_numpy(y)
    if neural.ndim != 2 or len(neural) < 2:
        raise ValueError(f"X must have shape (time, neurons) with time >= 2, got {neural.shape}")
    if labels.ndim not in (1, 2) or len(labels) != len(neural):
        raise ValueError(f"y must have shape ({len(neural)},) or ({len(neural)}, k) to match X, got {labels.shape}")
    if isinstance(controls, str) or not all(control in CONTROLS for control in controls):
        raise ValueError(f"controls must be a sequence of names from {CONTROLS}, got {controls!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    cut = round(len(neural) * (1 - test_fraction))
    if not 0 < cut < len(neural):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty part of the {len(neural)} time points")
    rng = np.random.default_rng(seed)
    train_x, test_x, train_y, test_y = neural[:cut], neural[cut:], labels[:cut], labels[cut:]
    fit_labels = {"real": train_y} | {control: null_labels(train_y, control, rng) for control in controls}
    table = {}
    for name, target in fit_labels.items():
        model = clone(estimator).fit(train_x, target)
        table[name] = knn_decode(model.transform(train_x), train_y, model.transform(test_x), test_y, k, metric)
    return table


def format_decoding_table(table: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`null_control_decoding`'s result: one row per fit, one column per score."""
    names = list(next(iter(table.values())))
    width = max(len(name) for name in table) + 2
    lines = [f"{'fit':<{width}}" + "".join(f"{name:>24}" for name in names)]
    for fit, scores in table.items():
        lines.append(f"{fit:<{width}}" + "".join(f"{scores[name]:>24.4f}" for name in names))
    return "\n".join(lines)
