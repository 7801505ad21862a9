"""Goodness of fit in bits, as CEBRA defines it: ``(ln N - InfoNCE) / ln 2``.

``N`` is the number of negatives each reference is scored against. An
embedding that cannot tell the positive from the negatives has InfoNCE
``ln N`` (chance) and a goodness of fit of 0 bits; every bit above 0 halves
the odds against the positive. For CEBRA's decoupled InfoNCE (the positive
left out of the denominator) the value can exceed ``log2 N`` slightly.

For :class:`~contrastive_seq.estimator.ContrastiveEmbedding`: one session
has ``N = num_negatives`` (default ``batch_size``). Several sessions are
scored block by block, each reference against its own session's
``num_negatives`` (default ``batch_size / sessions``) negatives, so ``N`` is
that per-session count (CEBRA pools the negatives of all sessions and uses
``batch_size * sessions``). A hybrid fit adds a time and a behaviour InfoNCE,
so its chance level is ``2 ln N`` and its goodness of fit is the sum of both
terms' bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

_BITS_PER_NAT = 1.0 / math.log(2.0)


def infonce_to_goodness_of_fit(infonce: float | np.ndarray, num_negatives: int, terms: int = 1) -> float | np.ndarray:
    """Goodness of fit in bits, ``(terms * ln num_negatives - infonce) / ln 2``, of an InfoNCE loss in nats.

    Args:
        infonce: one loss or an array of losses (any shape), in nats.
        num_negatives: N, the negatives each reference is scored against (>= 1).
        terms: how many InfoNCE terms the loss adds up (2 for CEBRA-Hybrid).

    Returns:
        A float for a scalar ``infonce``, else an array of its shape.

    Raises:
        ValueError: ``num_negatives`` or ``terms`` not a positive int, or a non-finite loss.
    """
    for name, value in (("num_negatives", num_negatives), ("terms", terms)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    loss = np.asarray(infonce, dtype=np.float64)
    if not np.all(np.isfinite(loss)):
        raise ValueError("infonce must be finite (a loss in nats)")
    bits = (terms * math.log(num_negatives) - loss) * _BITS_PER_NAT
    return float(bits) if bits.ndim == 0 else bits


def negatives_per_reference(estimator: Any) -> int:
    """N of a fitted :class:`~contrastive_seq.estimator.ContrastiveEmbedding` (see the module docstring)."""
    check_is_fitted(estimator, "model_")
    params = estimator.get_params()
    if params["num_negatives"] is not None:
        return int(params["num_negatives"])
    return int(params["batch_size"]) // int(estimator.n_sessions_)


def _terms(estimator: Any) -> int:
    return 2 if estimator.get_params()["hybrid"] else 1


def goodness_of_fit_history(estimator: Any) -> tuple[np.ndarray, np.ndarray]:
    """Goodness of fit over training, from the losses in ``estimator.history_``.

    Returns:
        ``(steps (R,), bits (R,))`` for the R logged records (1-based optimiser steps).

    Raises:
        ValueError: the estimator logged no loss (``history_`` empty).
    """
    check_is_fitted(estimator, "model_")
    records = [record for record in estimator.history_ if "loss" in record]
    if not records:
        raise ValueError("estimator.history_ holds no loss: fit the estimator for at least one step")
    steps = np.array([record["step"] for record in records], dtype=np.int64)
    losses = np.array([record["loss"] for record in records], dtype=np.float64)
    return steps, infonce_to_goodness_of_fit(losses, negatives_per_reference(estimator), _terms(estimator))


def goodness_of_fit_score(estimator: Any, X: Any, y: Any = None, num_batches: int = 10) -> float:
    """Goodness of fit in bits of a fitted estimator on data ``X`` (``(time, channels)``) and labels ``y``.

    The InfoNCE is the mean over ``num_batches`` batches that ``estimator.score``
    draws (the same pairs for every model scored on the same data).
    """
    check_is_fitted(estimator, "model_")
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be an int >= 1, got {num_batches!r}")
    infonce = -estimator.score(X, y, num_batches=num_batches)
    return infonce_to_goodness_of_fit(infonce, negatives_per_reference(estimator), _terms(estimator))
