"""Which neurons drive which embedding dimensions: Jacobian attribution, in the spirit of CEBRA's attribution module.

For the embedding ``z(t) (D,)`` of time ``t`` and the window of input it sees,
``x[t - left : t + right + 1] (C, W)``, the attribution of neuron ``c`` to
dimension ``d`` at time ``t`` is

    J(t)[d, c] = Σ_τ ∂z_d(t) / ∂x_c(t + τ)

the change of ``z_d(t)`` when neuron ``c``'s activity rises by one unit over
the whole window (for a receptive field of 1 it is the plain Jacobian). The
*inverse* variant is the Moore-Penrose pseudo-inverse ``J(t)⁺ (C, D)``,
transposed to ``(D, C)``: the input change along neuron ``c`` that a unit move
along dimension ``d`` takes, the least-squares way back from the embedding to
the neurons. Both are given per time point and averaged (mean of the absolute
values over time).

The windows at the recording's ends are padded like
:meth:`~contrastive_seq.models.timeseries.TimeSeriesEncoder.embed_sequence`
(replicate padding), so every time point gets an attribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.utils.validation import check_is_fitted
from torch import nn

from contrastive_seq.evaluation.probes import as_numpy

METHODS = ("jacobian", "inverse")


def _encoder_of(model: Any, session: int) -> nn.Module:
    """The time-series encoder of a fitted estimator (of session ``session``), or ``model`` itself."""
    if hasattr(model, "get_params") and not isinstance(model, nn.Module):
        check_is_fitted(model, "model_")
        method = model.model_
        if hasattr(method, "encoders"):
            if not 0 <= session < len(method.encoders):
                raise ValueError(f"session must lie in [0, {len(method.encoders)}), got {session}")
            return method.encoders[session]
        model = method.encoder
    for name in ("in_channels", "output_dim", "left_context", "right_context"):
        if not hasattr(model, name):
            raise TypeError(
                f"model must be a fitted ContrastiveEmbedding or a time-series encoder with {name}, "
                f"got {type(model).__name__}"
            )
    return model


def _check_input(X: Any, channels: int) -> torch.Tensor:
    x = torch.as_tensor(as_numpy(X), dtype=torch.float32)
    if x.dim() != 2 or x.shape[1] != channels or x.shape[0] < 1:
        raise ValueError(f"X must have shape (time, {channels}) (time, neurons), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("X contains NaN or infinite values")
    return x


def jacobian_attribution(model: Any, X: Any, session: int = 0, batch_size: int = 1024) -> np.ndarray:
    """Per-time-point attribution ``J(t)[d, c]`` (module docstring) of every time point of ``X``.

    Args:
        model: a fitted :class:`~contrastive_seq.estimator.ContrastiveEmbedding`
            or a :class:`~contrastive_seq.models.timeseries.TimeSeriesEncoder`.
        X: ``(time, neurons)`` array or tensor.
        session: the session's encoder of a multi-session fit.
        batch_size: time points differentiated together (memory grows with it).

    Returns:
        ``(time, D, neurons)`` float32.
    """
    encoder = _encoder_of(model, session)
    x = _check_input(X, encoder.in_channels)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    left, right = encoder.left_context, encoder.right_context
    padded = F.pad(rearrange(x, "t c -> 1 c t"), (left, right), mode="replicate")[0]  # (C, T + W - 1)
    every_window = padded.unfold(1, left + right + 1, 1)  # (C, T, W), a view
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    pieces = []
    try:
        for start in range(0, x.shape[0], batch_size):
            windows = rearrange(every_window[:, start : start + batch_size], "c n w -> n c w").to(device)
            windows.requires_grad_(True)
            z = encoder(windows)  # (n, D)
            rows = []
            for d in range(z.shape[1]):
                (grad,) = torch.autograd.grad(z[:, d].sum(), windows, retain_graph=d + 1 < z.shape[1])
                rows.append(grad.sum(-1))  # (n, C): windows are independent, so each row is its own Jacobian
            pieces.append(torch.stack(rows, 1).cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(pieces).numpy()


def inverse_jacobian_attribution(jacobians: np.ndarray) -> np.ndarray:
    """The pseudo-inverse variant: ``pinv(J(t)).T`` for every ``J(t)`` of ``jacobians (time, D, neurons)``.

    Returns ``(time, D, neurons)``: entry ``[t, d, c]`` is neuron ``c``'s share of the least-squares
    input change that moves the embedding by one unit along dimension ``d``.
    """
    jac = np.asarray(jacobians)
    if jac.ndim != 3:
        raise ValueError(f"jacobians must have shape (time, D, neurons), got {jac.shape}")
    return np.transpose(np.linalg.pinv(jac.astype(np.float64)), (0, 2, 1)).astype(np.float32)


def attribution_map(
    model: Any, X: Any, method: str = "jacobian", session: int = 0, batch_size: int = 1024
) -> dict[str, np.ndarray]:
    """Attribution of neurons to embedding dimensions, per time point and averaged over time.

    Args:
        model, X, session, batch_size: as for :func:`jacobian_attribution`.
        method: ``"jacobian"`` (``J(t)``) or ``"inverse"`` (its pseudo-inverse, transposed).

    Returns:
        ``{"per_time": (time, D, neurons), "mean": (D, neurons) mean of |per_time| over time,
        "neuron": (neurons,) the mean's Euclidean norm over dimensions}``: ``"neuron"`` ranks
        neurons by how much they drive the embedding as a whole.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    per_time = jacobian_attribution(model, X, session, batch_size)
    if method == "inverse":
        per_time = inverse_jacobian_attribution(per_time)
    mean = np.abs(per_time).mean(0)
    return {"per_time": per_time, "mean": mean, "neuron": np.linalg.norm(mean, axis=0)}
