"""Consistency of embeddings between training runs and between sessions (or subjects).

Two embeddings are consistent when one is a linear transform of the other:
the score of ``source -> target`` is the R² of a least-squares affine fit
(scikit-learn ``LinearRegression``) that predicts ``target`` from ``source``,
measured on the same rows it was fitted on and averaged uniformly over the
target's dimensions (as CEBRA reports it). It is not symmetric.

Runs on one recording share a time base, so rows are compared time point by
time point. Sessions do not: each session's embedding is first reduced to
the mean embedding in each bin of a continuous behaviour variable they share
(position on a track, say), with one set of bin edges for all sessions, and
the bin means are compared bin by bin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import binned_statistic
from sklearn.linear_model import LinearRegression

from contrastive_seq.evaluation.probes import as_numpy

ArrayLike = torch.Tensor | np.ndarray


def _as_embedding(name: str, embedding: ArrayLike) -> np.ndarray:
    x = as_numpy(embedding)
    if x.ndim != 2 or len(x) < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (T, dim) with T >= 2, got {x.shape}")
    return x


def linear_consistency(source: ArrayLike, target: ArrayLike) -> float:
    """R² of the affine least-squares fit predicting ``target (T, D2)`` from ``source (T, D1)``.

    Fitted and scored on all ``T`` rows; 1 means ``target`` is an affine map of ``source``.
    """
    x, y = _as_embedding("source", source), _as_embedding("target", target)
    if len(x) != len(y):
        raise ValueError(f"source and target must have the same number of rows, got {x.shape} and {y.shape}")
    return float(LinearRegression().fit(x, y).score(x, y))


def consistency_matrix(embeddings: Sequence[ArrayLike]) -> np.ndarray:
    """Pairwise :func:`linear_consistency` of embeddings ``(T, D_i)`` that share a time base.

    Returns ``(n, n)`` with entry ``[i, j]`` the R² of predicting
    ``embeddings[j]`` from ``embeddings[i]``; the diagonal (an embedding
    against itself) is NaN, not a comparison.
    """
    if isinstance(embeddings, (torch.Tensor, np.ndarray)) or len(embeddings) < 2:
        raise ValueError("embeddings must be a sequence of at least 2 arrays of shape (T, D_i)")
    arrays = [_as_embedding(f"embeddings[{i}]", e) for i, e in enumerate(embeddings)]
    for i, array in enumerate(arrays):
        if len(array) != len(arrays[0]):
            raise ValueError(
                f"embeddings[{i}] must have {len(arrays[0])} rows like embeddings[0] (one time base), "
                f"got shape {array.shape}; use consistency_across_sessions for different time bases"
            )
    matrix = np.full((len(arrays), len(arrays)), np.nan)
    for i, source in enumerate(arrays):
        for j, target in enumerate(arrays):
            if i != j:
                matrix[i, j] = linear_consistency(source, target)
    return matrix


def align_by_behaviour(embedding: ArrayLike, behaviour: ArrayLike, edges: ArrayLike) -> np.ndarray:
    """Mean embedding in each bin of a continuous behaviour variable.

    Args:
        embedding: ``(T, dim)``.
        behaviour: ``(T,)`` one continuous variable at the same time points.
        edges: ``(bins + 1,)`` increasing bin edges; the last bin includes its
            right edge, samples outside ``[edges[0], edges[-1]]`` are ignored.

    Returns:
        ``(bins, dim)``; a bin no sample falls in is a row of NaN.
    """
    x, b = _as_embedding("embedding", embedding), as_numpy(behaviour)
    if b.shape != (len(x),) or b.dtype.kind != "f" or not np.isfinite(b).all():
        raise ValueError(f"behaviour must be finite floats of shape ({len(x)},), got {b.dtype} {b.shape}")
    means, _, _ = binned_statistic(b, x.T, statistic="mean", bins=as_numpy(edges))
    return means.T


def consistency_across_sessions(
    embeddings: Sequence[ArrayLike], behaviours: Sequence[ArrayLike], num_bins: int = 100
) -> np.ndarray:
    """:func:`consistency_matrix` of sessions with different time bases, aligned by a shared behaviour variable.

    The range of all sessions' behaviour together is cut into ``num_bins``
    equal bins; each session becomes its mean embedding per bin
    (:func:`align_by_behaviour`), bins empty in any session are dropped, and
    the remaining bins are compared row by row.

    Args:
        embeddings: one ``(T_i, D_i)`` array per session.
        behaviours: one ``(T_i,)`` continuous variable per session.
        num_bins: bins of the behaviour range (>= 2).

    Returns:
        ``(n, n)`` as :func:`consistency_matrix`.

    Raises:
        ValueError: for lists of different lengths, mismatched shapes, or
            fewer than 2 bins occupied in every session.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
    if len(embeddings) < 2 or len(embeddings) != len(behaviours):
        raise ValueError(
            "embeddings and behaviours must hold one entry per session for at least 2 sessions, "
            f"got {len(embeddings)} and {len(behaviours)}"
        )
    edges = np.histogram_bin_edges(np.concatenate([as_numpy(b).ravel() for b in behaviours]), bins=num_bins)
    aligned = [align_by_behaviour(e, b, edges) for e, b in zip(embeddings, behaviours)]
    occupied = np.all([~np.isnan(a[:, 0]) for a in aligned], axis=0)
    if occupied.sum() < 2:
        raise ValueError(
            f"behaviours must overlap: only {int(occupied.sum())} of {num_bins} bins hold samples of every session"
        )
    return consistency_matrix([a[occupied] for a in aligned])
