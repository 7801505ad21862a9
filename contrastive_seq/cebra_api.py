"""``contrastive_seq.CEBRA``: a drop-in for ``cebra.CEBRA`` (CEBRA 0.6.1's scikit-learn API and defaults).

.. code-block:: python

    import contrastive_seq
    model = contrastive_seq.CEBRA(model_architecture="offset10-model", batch_size=512, max_iterations=5000)
    embedding = model.fit(neural, position).transform(neural)

The estimator is :class:`~contrastive_seq.estimator.ContrastiveEmbedding`
(one implementation) with CEBRA's defaults (``offset1-model``,
``time_offsets=1``, ``max_iterations=10000``, ``batch_size=None``: full
batch) and call signatures: ``fit(X, *y, adapt=False)`` with several label
arrays given positionally, ``transform(X, batch_size=None, session_id=None)``,
``save(path, backend=...)`` / ``CEBRA.load(path, backend="auto")``, the
fitted ``num_sessions``, ``n_features_`` and ``state_dict_``, and
:func:`plot_loss` / :func:`plot_temperature`. Errors CEBRA raises as
``RuntimeError`` are :class:`~contrastive_seq.estimator.EstimatorInputError`,
a ``ValueError`` and a ``RuntimeError`` at once.

What differs: files are the library's weights-only format for both
backends (loading never runs code, unlike CEBRA's ``torch`` backend);
``optimizer="adam"`` with CEBRA's default ``optimizer_kwargs`` is the only
optimiser; ``criterion="infonce"`` only; ``masking_kwargs`` must be ``None``;
multi-session training without labels is refused as in CEBRA (use
``ContrastiveEmbedding``, which pairs by time within each session).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

import contrastive_seq
from contrastive_seq.estimator import ContrastiveEmbedding, EstimatorInputError, _is_multi_session
from contrastive_seq.models.architectures import supported_model_architectures

ADAM_DEFAULTS = (("betas", (0.9, 0.999)), ("eps", 1e-08), ("weight_decay", 0), ("amsgrad", False))
BACKENDS = ("sklearn", "torch")


class CEBRA(ContrastiveEmbedding):
    """CEBRA 0.6.1's estimator: same parameters, defaults and calls; trained by this library.

    Args:
        model_architecture: a name of :func:`supported_model_architectures`
            (CEBRA's ``"offset10-model"``, ``"offset1-model-mse"``, ...), the
            subsampling ``"offset20-model-4x-subsample"`` /
            ``"offset40-model-4x-subsample"``, or a registered one.
        device: ``"cuda_if_available"``, ``"cpu"``, ``"cuda"`` or ``"cuda:0"``.
        criterion: ``"infonce"``.
        distance, conditional, temperature, temperature_mode, min_temperature,
        time_offsets, delta, max_iterations, learning_rate, output_dimension,
        verbose, num_hidden_units, hybrid: as in
            :class:`~contrastive_seq.estimator.ContrastiveEmbedding`.
        max_adapt_iterations: steps of ``fit(..., adapt=True)``.
        batch_size: references per step; ``None``: every valid time point.
        optimizer: ``"adam"``.
        pad_before_transform: pad the edges so that ``transform`` gives one row
            per time point (``False``: only time points with a whole window).
        optimizer_kwargs: Adam's settings as ``(name, value)`` pairs;
            ``weight_decay`` is used, the others must keep CEBRA's defaults.
        masking_kwargs: ``None`` (input masking is not available).
        random_state: ``None`` or a seed (an addition to CEBRA's parameters).

    Fitted attributes (besides those of ``ContrastiveEmbedding``):
        num_sessions: ``None`` for one session, else the number of sessions.
        n_features_: input channels (a list, one per session, for several).
        state_dict_: ``model`` (weights), ``optimizer``, ``loss`` (one value
            per step), ``log`` (per-step lists of the loss parts),
            ``criterion``, ``decode``, ``version``.
    """

    _session_argument = "session_id"

    def __init__(
        self,
        model_architecture: str = "offset1-model",
        device: str = "cuda_if_available",
        criterion: str = "infonce",
        distance: str = "cosine",
        conditional: str | None = None,
        temperature: float = 1.0,
        temperature_mode: str = "constant",
        min_temperature: float | None = 0.1,
        time_offsets: int = 1,
        delta: float | None = None,
        max_iterations: int = 10000,
        max_adapt_iterations: int = 500,
        batch_size: int | None = None,
        learning_rate: float = 3e-4,
        optimizer: str = "adam",
        output_dimension: int = 8,
        verbose: bool = False,
        num_hidden_units: int = 32,
        pad_before_transform: bool = True,
        hybrid: bool = False,
        optimizer_kwargs: tuple[tuple[str, object], ...] = ADAM_DEFAULTS,
        masking_kwargs: tuple | None = None,
        random_state: int | None = None,
    ):
        self.model_architecture = model_architecture
        self.device = device
        self.criterion = criterion
        self.distance = distance
        self.conditional = conditional
        self.temperature = temperature
        self.temperature_mode = temperature_mode
        self.min_temperature = min_temperature
        self.time_offsets = time_offsets
        self.delta = delta
        self.max_iterations = max_iterations
        self.max_adapt_iterations = max_adapt_iterations
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.output_dimension = output_dimension
        self.verbose = verbose
        self.num_hidden_units = num_hidden_units
        self.pad_before_transform = pad_before_transform
        self.hybrid = hybrid
        self.optimizer_kwargs = optimizer_kwargs
        self.masking_kwargs = masking_kwargs
        self.random_state = random_state

    @staticmethod
    def supported_model_architectures(pattern: str = "*") -> list[str]:
        """The listed architecture names matching ``pattern`` (see :mod:`contrastive_seq.models.architectures`)."""
        return supported_model_architectures(pattern)

    def _check_params(self) -> None:
        super()._check_params()
        if self.criterion != "infonce":
            raise ValueError(f"criterion must be 'infonce', got {self.criterion!r}")
        if self.optimizer != "adam":
            raise ValueError(f"optimizer must be 'adam', got {self.optimizer!r}")
        if not isinstance(self.pad_before_transform, bool):
            raise ValueError(f"pad_before_transform must be a bool, got {self.pad_before_transform!r}")
        if self.masking_kwargs is not None:
            raise ValueError(
                f"masking_kwargs must be None (input masking is not available), got {self.masking_kwargs!r}"
            )
        settings = self._optimizer_settings()
        for name, default in ADAM_DEFAULTS:
            if name != "weight_decay" and settings[name] != default:
                raise ValueError(
                    f"optimizer_kwargs: {name}={settings[name]!r} is not supported, only CEBRA's default {default!r}"
                )

    def _optimizer_settings(self) -> dict[str, Any]:
        try:
            given = dict(self.optimizer_kwargs)
        except (TypeError, ValueError):
            raise ValueError(f"optimizer_kwargs must be (name, value) pairs, got {self.optimizer_kwargs!r}") from None
        unknown = set(given) - {name for name, _ in ADAM_DEFAULTS}
        if unknown:
            known = [name for name, _ in ADAM_DEFAULTS]
            raise ValueError(f"optimizer_kwargs: unknown settings {sorted(unknown)}, expected Adam's {known}")
        return {**dict(ADAM_DEFAULTS), **given}

    def _weight_decay(self) -> float:
        return float(self._optimizer_settings()["weight_decay"])

    # ----------------------------------------------------------------- calls

    def fit(self, X: Any, *y: Any, adapt: bool = False) -> CEBRA:
        """Fit on ``X`` ``(T, C)`` (or a list of sessions) with any number of label arrays ``y``.

        Floating label arrays are continuous (joined), one integer array is
        discrete; with several sessions each label argument is a list with one
        array per session. ``adapt=True`` trains only a new input layer for
        ``X`` into the fitted space for ``max_adapt_iterations`` steps, at 10 ×
        ``learning_rate`` (CEBRA keeps the rate: one layer alone then lags a fit from scratch).
        """
        self._refuse_unlabelled_sessions(X, y)
        return self._fit(X, tuple(y), adapt)

    def partial_fit(self, X: Any, *y: Any) -> CEBRA:
        """Train ``max_iterations`` more steps from the current weights (fits first if unfitted)."""
        self._refuse_unlabelled_sessions(X, y)
        return self._partial_fit(X, tuple(y))

    @staticmethod
    def _refuse_unlabelled_sessions(X: Any, y: tuple) -> None:
        if _is_multi_session(X) and not y:
            raise EstimatorInputError(
                "No label: CEBRA's multisession training aligns sessions through labels y; "
                "ContrastiveEmbedding trains several sessions without labels (time pairs within each session)"
            )

    def transform(self, X: Any, batch_size: int | None = None, session_id: int | None = None) -> np.ndarray:
        """Embed ``X`` ``(T, C)``: ``(T, output_dimension)`` float32 with ``pad_before_transform``.

        ``session_id`` picks the encoder of a multi-session model (required
        there); ``batch_size`` bounds the time points embedded at once and must
        cover the receptive field. Without ``pad_before_transform`` only time
        points with a whole window are embedded: ``T - receptive_field + 1`` rows.
        """
        check_is_fitted(self, "model_")
        return self._embed(X, session_id, batch_size, pad=self.pad_before_transform)

    @property
    def num_sessions(self) -> int | None:
        """``None`` for a single-session model, else its number of sessions."""
        check_is_fitted(self, "model_")
        return None if self.n_sessions_ == 1 else self.n_sessions_

    @property
    def n_features_(self) -> int | list[int]:
        """Input channels of the fitted model (a list, one per session, for several)."""
        check_is_fitted(self, "model_")
        return self.n_features_per_session_[0] if self.n_sessions_ == 1 else list(self.n_features_per_session_)

    @property
    def state_dict_(self) -> dict[str, Any]:
        """CEBRA's training state: weights, optimiser, per-step loss and log, criterion, decode, version."""
        check_is_fitted(self, "model_")
        encoders = getattr(self.model_, "encoders", None)
        if encoders is None:
            weights = self._encoder().state_dict()
        else:
            weights = {
                f"{s}.{name}": value for s, encoder in enumerate(encoders) for name, value in encoder.state_dict().items()
            }
        records = [record for record in self.history_ if "loss" in record]
        parts = sorted({name for record in records for name in record.get("parts", {})})
        return {
            "model": weights,
            "optimizer": self.optimizer_state_,
            "loss": [float(record["loss"]) for record in records],
            "log": {name: [float(record["parts"].get(name, np.nan)) for record in records] for name in parts},
            "criterion": self.model_.loss.state_dict(),
            "decode": "single-session" if self.n_sessions_ == 1 else "multi-session",
            "version": contrastive_seq.__version__,
        }

    # ----------------------------------------------------------------- persistence

    def save(self, filename: str | os.PathLike, backend: str = "sklearn") -> None:
        """Write the model to ``filename``; both ``backend`` values write the weights-only format."""
        if backend not in BACKENDS:
            raise NotImplementedError(f"Unsupported backend: {backend!r}; backend must be one of {BACKENDS}")
        super().save(filename)

    @classmethod
    def load(
        cls, filename: str | os.PathLike, backend: str = "auto", weights_only: bool | None = None, **kwargs: Any
    ) -> CEBRA:
        """Read a model written by :meth:`save` (of this class or of ``ContrastiveEmbedding``); no code runs.

        ``backend`` may be ``"auto"``, ``"sklearn"`` or ``"torch"`` (one format);
        ``weights_only`` may be ``None`` or ``True``; other keywords are refused.
        """
        if backend not in ("auto", *BACKENDS):
            raise NotImplementedError(f"Unsupported backend: {backend!r}; backend must be 'auto', 'sklearn' or 'torch'")
        if weights_only is False:
            raise ValueError("weights_only=False is not supported: files load with torch.load(weights_only=True)")
        if kwargs:
            raise ValueError(f"unexpected keyword arguments {sorted(kwargs)} for CEBRA.load")
        return super().load(filename)

    def to(self, device: str | torch.device) -> CEBRA:
        """Use ``device`` from now on (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"cuda_if_available"``)."""
        return super().to(device)


def plot_loss(
    model: ContrastiveEmbedding,
    label: str | int | float | None = None,
    ax: Any = None,
    color: str = "magenta",
    linewidth: float = 1,
    x_label: bool = True,
    y_label: bool = True,
    figsize: tuple[float, float] = (7, 4),
    dpi: float = 100,
    **kwargs: Any,
) -> Any:
    """The fitted ``model``'s training loss per step, as CEBRA's ``plot_loss`` (returns the matplotlib axis).

    ``label`` names the line (for a legend); ``kwargs`` go to the line (``alpha``, ``linestyle``, ...).
    """
    from contrastive_seq import plotting

    ax = plotting.plot_loss(_history(model), _axes(ax, figsize, dpi))
    _style(ax, "InfoNCE loss", color, linewidth, x_label, y_label, label, kwargs)
    return ax


def plot_temperature(
    model: ContrastiveEmbedding,
    ax: Any = None,
    color: str = "dodgerblue",
    linewidth: float = 1,
    x_label: bool = True,
    y_label: bool = True,
    figsize: tuple[float, float] = (7, 4),
    dpi: float = 100,
    **kwargs: Any,
) -> Any:
    """The fitted ``model``'s temperature τ per step (constant unless ``temperature_mode="auto"``); returns the axis."""
    from contrastive_seq import plotting

    ax = plotting.plot_temperature(_history(model), _axes(ax, figsize, dpi))
    _style(ax, "Temperature", color, linewidth, x_label, y_label, None, kwargs)
    return ax


def _history(model: ContrastiveEmbedding) -> list[dict[str, Any]]:
    if not isinstance(model, ContrastiveEmbedding):
        raise ValueError(f"model must be a fitted CEBRA or ContrastiveEmbedding, got {type(model).__name__}")
    check_is_fitted(model, "model_")
    return model.history_


def _axes(ax: Any, figsize: tuple[float, float], dpi: float) -> Any:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=dpi)[1] if ax is None else ax


def _style(
    ax: Any, name: str, color: str, linewidth: float, x_label: bool, y_label: bool, label: Any, kwargs: dict
) -> None:
    """CEBRA's look for the line just drawn: colour, width, label and axis names."""
    line = ax.lines[-1]
    line.set(color=color, linewidth=linewidth, **kwargs)
    if label is not None:
        line.set_label(str(label))
    ax.set_xlabel("Steps" if x_label else "")
    ax.set_ylabel(name if y_label else "")
