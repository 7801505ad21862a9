"""``ContrastiveEmbedding``: a scikit-learn estimator for CEBRA-style embeddings of time series.

.. code-block:: python

    from contrastive_seq import ContrastiveEmbedding

    model = ContrastiveEmbedding(output_dimension=3, max_iterations=2000)
    embedding = model.fit(neural, position).transform(neural)   # (T, 3)

``fit(X, y)`` picks what to pair from ``y``:

- ``y=None``: time contrastive (positive = t + ``time_offsets``);
- floating ``y`` ``(T,)`` or ``(T, k)``: continuous behaviour, with the
  ``conditional`` target (``"time_delta"`` or ``"delta"``);
- integer ``y`` ``(T,)``: discrete labels (positive = same label);
- a tuple ``(continuous, discrete)``: both (same label, nearest continuous);
- ``hybrid=True``: a time loss is added to the behaviour loss.

Several sessions: ``X`` a list of ``(T_s, C_s)`` arrays and ``y`` a list of
their labels, continuous or discrete, of one shared meaning (positives are
found in another session), or ``y=None`` (time pairs within each session);
each session gets its own encoder into one shared space. A fitted
single-session model adapts to a new session, even of another width, with
``fit(X_new, y_new, adapt=True)``: only a new input layer is trained into
the fitted space. ``transform(X, session=s)`` embeds session
``s`` and ``transform(list_of_sessions)`` all of them. ``X`` may also be a :class:`~contrastive_seq.data.recording.Recording`
(an HDF5-backed one trains without loading the neural data) or a
:class:`~contrastive_seq.data.recording.MultiSessionRecording`, whose labels are used.

Every argument is checked before training starts; errors name the argument
(``X``, ``y``, ``X[s]``, ``y[s]``, ``session`` or the parameter), and
degenerate data warns (:class:`DegenerateInputWarning`).
:class:`~contrastive_seq.cebra_api.CEBRA` is this estimator with CEBRA
0.6.1's defaults and calls. Training
runs on the one :class:`~contrastive_seq.training.Trainer`; the estimator
leaves the global random streams (torch, NumPy, Python) as it found them.
:meth:`ContrastiveEmbedding.save` / :meth:`ContrastiveEmbedding.load` write
and read plain tensors and containers (``torch.load(weights_only=True)``):
loading never runs code.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from contrastive_seq.data.recording import MultiSessionRecording, Recording
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.methods.cebra import (
    CEBRA,
    CONDITIONALS,
    DISTANCES,
    TEMPERATURE_MODES,
    MultiSessionCEBRA,
    WholeRecordingViews,
    cebra_loss,
    cebra_sampler,
    label_kind,
)
from contrastive_seq.models.architectures import ARCHITECTURES, make_architecture, supported_model_architectures
from contrastive_seq.models.timeseries import TimeSeriesEncoder
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.seeding import forked_random_state, generator_for
from contrastive_seq.training.checkpoint import load_checkpoint, save_checkpoint
from contrastive_seq.training.config import TrainerConfig
from contrastive_seq.training.trainer import Trainer
from contrastive_seq.user_warnings import warn_at_caller
from contrastive_seq.views.base import Views
from contrastive_seq.views.windows import MultiSessionWindowViews, WindowViews

SAVE_FORMAT = 1
# set by a fit from its data (before any training)
_INPUT_ATTRIBUTES = ("n_features_in_", "n_sessions_", "n_features_per_session_", "label_kind_")
DEVICES = ("auto", "cpu", "cuda", "cuda_if_available")
# fit(..., adapt=True) trains the new input layer at this multiple of learning_rate unless adapt_learning_rate is set
ADAPT_RATE_FACTOR = 10.0


class EstimatorInputError(ValueError, RuntimeError):
    """Bad input to an estimator: a ``ValueError`` for scikit-learn, a ``RuntimeError`` where CEBRA raises one."""


class DegenerateInputWarning(UserWarning):
    """The data or the fit cannot give a useful embedding (constant input, labels that pair nothing, no learning)."""


def _is_multi_session(X: object) -> bool:
    """A list of 2-D arrays (one per session), as opposed to one 2-D array-like."""
    if isinstance(X, MultiSessionRecording):
        return True
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(x) == 2 for x in X)


class ContrastiveEmbedding(TransformerMixin, BaseEstimator):
    """Contrastive embedding of neural (or any) time series, with or without behaviour labels.

    Parameter names follow CEBRA's where they mean the same;
    :class:`contrastive_seq.cebra_api.CEBRA` is this estimator with CEBRA's
    defaults and call signatures.

    Args:
        model_architecture: the encoder, a name of
            :mod:`contrastive_seq.models.architectures` (the library's
            ``"offset1-mlp"``, ``"offset5"``, ``"offset10"``, ``"offset36"``,
            CEBRA's ``"offset10-model"`` and the others, or a registered one).
        output_dimension: D, the embedding's dimension.
        num_hidden_units: width of the encoder's hidden layers.
        conditional: target of continuous-behaviour positives: ``"time_delta"``
            (the reference's label plus an empirical label change over
            ``time_offsets`` steps) or ``"delta"`` (plus Gaussian noise of
            scale ``delta``); ``None`` means ``"time_delta"``.
        time_offsets: Δ of time positives and of ``time_delta`` label changes.
        delta: noise scale of the ``"delta"`` conditional, in label units.
        hybrid: add a time-contrastive loss to a behaviour loss (needs ``y``).
        distance: ``"cosine"`` (embedding on the unit sphere, unless the
            architecture fixes it), ``"euclidean"`` (negative squared
            distance) or ``"dot"``.
        temperature: τ (initial τ when learnable).
        temperature_mode: ``"constant"`` or ``"auto"`` (learned, at least ``min_temperature``).
        min_temperature: lower bound of a learned τ.
        batch_size: references per step (a multiple of the number of
            sessions); ``None``: every valid time point (full batch).
        num_negatives: shared negatives per step (``None``: ``batch_size``).
        learning_rate: Adam(W) learning rate, constant.
        max_iterations: optimiser steps per ``fit`` (and per ``partial_fit``).
        max_adapt_iterations: steps of ``fit(..., adapt=True)`` (``None``: ``max_iterations``).
        adapt_learning_rate: learning rate of the new input layer in ``fit(..., adapt=True)``
            (``None``: 10 × ``learning_rate``: one layer trained alone at the whole model's rate
            lags a model fitted from scratch, see ``benchmarks/adapt_new_session.py``).
        device: ``"auto"`` / ``"cuda_if_available"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        verbose: show a progress bar.
        random_state: ``None``, an int or a ``numpy.random.RandomState``.

    Fitted attributes:
        n_features_in_: channels of the (single-session) input.
        n_sessions_: number of sessions trained on.
        n_features_per_session_: channels of each session.
        label_kind_: ``"none"``, ``"continuous"``, ``"discrete"`` or ``"mixed"``.
        model_: the trained :class:`~contrastive_seq.methods.base.Method`.
        history_: one record per training step (step, loss, parts such as
            ``temperature``, ``alignment``, ``uniformity``).
        n_iter_: optimiser steps taken in total.
    """

    # how errors and CEBRA's API call the session argument of transform
    _session_argument = "session"

    def __init__(
        self,
        model_architecture: str = "offset10",
        output_dimension: int = 8,
        num_hidden_units: int = 32,
        conditional: str | None = "time_delta",
        time_offsets: int = 10,
        delta: float | None = 0.1,
        hybrid: bool = False,
        distance: str = "cosine",
        temperature: float = 1.0,
        temperature_mode: str = "constant",
        min_temperature: float | None = 0.1,
        batch_size: int | None = 512,
        num_negatives: int | None = None,
        learning_rate: float = 3e-4,
        max_iterations: int = 1000,
        max_adapt_iterations: int | None = None,
        adapt_learning_rate: float | None = None,
        device: str = "auto",
        verbose: bool = False,
        random_state: int | np.random.RandomState | None = None,
    ):
        self.model_architecture = model_architecture
        self.output_dimension = output_dimension
        self.num_hidden_units = num_hidden_units
        self.conditional = conditional
        self.time_offsets = time_offsets
        self.delta = delta
        self.hybrid = hybrid
        self.distance = distance
        self.temperature = temperature
        self.temperature_mode = temperature_mode
        self.min_temperature = min_temperature
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.learning_rate = learning_rate
        self.max_iterations = max_iterations
        self.max_adapt_iterations = max_adapt_iterations
        self.adapt_learning_rate = adapt_learning_rate
        self.device = device
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        """No NaN accepted, float32 output, the same weights for the same ``random_state``."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags

    # ----------------------------------------------------------------- parameters

    def _check_params(self) -> None:
        """Check every hyper-parameter before any data is touched; errors name the parameter."""

        def positive_int(name: str, value: object) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

        def positive_number(name: str, value: object) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

        for name in ("output_dimension", "num_hidden_units", "time_offsets", "max_iterations"):
            positive_int(name, getattr(self, name))
        for name in ("batch_size", "num_negatives", "max_adapt_iterations"):
            if getattr(self, name, None) is not None:
                positive_int(name, getattr(self, name))
        for name in ("temperature", "learning_rate"):
            positive_number(name, getattr(self, name))
        for name in ("delta", "min_temperature", "adapt_learning_rate"):
            if getattr(self, name, None) is not None:
                positive_number(name, getattr(self, name))
        if self.model_architecture not in ARCHITECTURES:
            raise ValueError(
                f"model_architecture must be one of {supported_model_architectures()} or a name registered with "
                f"contrastive_seq.models.architectures.register_architecture, got {self.model_architecture!r}"
            )
        for name, choices in (
            ("conditional", (None, *CONDITIONALS)),
            ("distance", tuple(DISTANCES)),
            ("temperature_mode", TEMPERATURE_MODES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        _trainer_device(self.device)
        if self.conditional == "delta" and self.delta is None:
            raise ValueError("delta must be a number > 0 with conditional='delta', got None")
        if self.temperature_mode == "auto" and self.temperature < self._min_temperature():
            raise ValueError(
                f"temperature={self.temperature} must be >= min_temperature={self.min_temperature} "
                "with temperature_mode='auto'"
            )
        if not isinstance(self.hybrid, bool) or not isinstance(self.verbose, bool):
            raise ValueError(f"hybrid and verbose must be bools, got {self.hybrid!r} and {self.verbose!r}")

    def _min_temperature(self) -> float:
        return 0.1 if self.min_temperature is None else float(self.min_temperature)

    def _make_encoder(self, in_channels: int) -> TimeSeriesEncoder:
        return make_architecture(
            self.model_architecture,
            in_channels,
            self.output_dimension,
            hidden_dim=self.num_hidden_units,
            normalize=DISTANCES[self.distance][1],
        )

    def _make_loss(self) -> InfoNCE:
        return cebra_loss(self.distance, float(self.temperature), self.temperature_mode, self._min_temperature())

    # ----------------------------------------------------------------- data

    def _recordings(self, X: Any, labels: tuple, reset: bool) -> list[Recording]:
        """The training data as recordings (one per session), checked; sets the input attributes when ``reset``.

        ``labels`` holds the label arrays (CEBRA's ``*y``): floating ones are
        continuous (their columns joined), at most one integer array is discrete.
        With several sessions each label array is a list with one array per session.
        """
        if isinstance(X, (Recording, MultiSessionRecording)):
            if labels:
                raise ValueError("y must be None when X is a Recording: its labels are used")
            sessions = [X] if isinstance(X, Recording) else list(X)
        elif _is_multi_session(X):
            for i, label in enumerate(labels):
                if not isinstance(label, (list, tuple)) or len(label) != len(X) or _is_array_like(label):
                    got = f"a list of {len(label)}" if isinstance(label, (list, tuple)) else type(label).__name__
                    raise EstimatorInputError(
                        f"Invalid number of sessions: X holds {len(X)} sessions, so y[{i}] must be a list of "
                        f"{len(X)} per-session label arrays, got {got}"
                    )
            sessions = [
                _checked_session(x, tuple(label[s] for label in labels), f"X[{s}]", f"y[{s}]")
                for s, x in enumerate(X)
            ]
        else:
            for i, label in enumerate(labels):
                if isinstance(label, (list, tuple)) and len(label) > 0 and all(np.ndim(item) >= 1 for item in label):
                    raise EstimatorInputError(
                        f"Invalid number of sessions / labels: X is one session, but y[{i}] is a list of "
                        f"{len(label)} arrays (one per session?); give one label array per label kind"
                    )
            X = self._validated_X(X, reset=reset, ensure_min_samples=2)
            sessions = [_checked_session(X, labels, "X", "y")]
        if reset:
            self.n_sessions_ = len(sessions)
            self.n_features_per_session_ = [recording.num_channels for recording in sessions]
            if len(sessions) == 1 and not hasattr(self, "n_features_in_"):
                self.n_features_in_ = sessions[0].num_channels
            self.label_kind_ = label_kind(sessions[0])
        else:
            self._check_same_layout(sessions)
        return sessions

    def _validated_X(self, X: Any, reset: bool, ensure_min_samples: int = 1) -> np.ndarray:
        """``X`` as float32 ``(T, C)`` through scikit-learn's checks; their errors are prefixed with the argument."""
        try:
            return validate_data(self, X, reset=reset, dtype=np.float32, ensure_min_samples=ensure_min_samples)
        except (TypeError, ValueError) as error:
            raise type(error)(f"X: {error}") from error

    def _check_lengths(self, sessions: list[Recording]) -> None:
        """Every session must hold a window of the receptive field (and room for the time offset when pairing by time)."""
        encoder = self._encoder()
        by_time = label_kind(sessions[0]) == "none" or self.hybrid
        needed = encoder.receptive_field + (int(self.time_offsets) if by_time else 0)
        for s, recording in enumerate(sessions):
            if len(recording) < needed:
                name = "X" if len(sessions) == 1 else f"X[{s}]"
                reason = f"the receptive field of {self.model_architecture!r} ({encoder.receptive_field})"
                if by_time:
                    reason += f" plus time_offsets={self.time_offsets}"
                raise ValueError(f"{name} has {len(recording)} time points, fewer than {reason} = {needed}")

    def _check_same_layout(self, sessions: list[Recording]) -> None:
        if len(sessions) != self.n_sessions_:
            raise ValueError(f"X holds {len(sessions)} sessions, but the model was fitted on {self.n_sessions_}")
        channels = [recording.num_channels for recording in sessions]
        if channels != self.n_features_per_session_:
            raise ValueError(
                f"X has channels {channels} per session, but the model was fitted on {self.n_features_per_session_}"
            )
        if label_kind(sessions[0]) != self.label_kind_:
            raise ValueError(f"y gives {label_kind(sessions[0])} labels, but the model was fitted on {self.label_kind_}")

    def _sampler(self, sessions: list[Recording], left: int, right: int) -> Sampler:
        """The sampler for this data and these hyper-parameters (the label kind decides)."""
        conditional = self.conditional or "time_delta"
        time_offsets = int(self.time_offsets)
        shortest = min(len(recording) for recording in sessions)
        kind = label_kind(sessions[0])
        by_label_change = conditional == "time_delta" and not self.hybrid and kind in ("continuous", "mixed")
        if by_label_change and 2 <= shortest <= time_offsets:
            warn_at_caller(
                f"time_offsets={time_offsets} is not shorter than the shortest recording ({shortest} time points): "
                f"label changes for the time_delta conditional are measured over {shortest - 1} steps instead",
                DegenerateInputWarning,
            )
            time_offsets = shortest - 1
        return cebra_sampler(
            sessions,
            conditional=conditional,
            delta=0.1 if self.delta is None else float(self.delta),
            time_offsets=time_offsets,
            hybrid=self.hybrid,
            left_context=left,
            right_context=right,
            num_negatives=getattr(self, "num_negatives", None),
        )

    # ----------------------------------------------------------------- training

    def _build_model(self) -> None:
        """Fresh encoders and loss for the fitted input layout, seeded from ``random_state``."""
        seed = int(check_random_state(getattr(self, "random_state", None)).randint(np.iinfo(np.int32).max))
        self._seed = seed
        with forked_random_state(seed):
            encoders = [self._make_encoder(channels) for channels in self.n_features_per_session_]
            if len(encoders) == 1:
                self.model_ = CEBRA(encoders[0], self._make_loss(), hybrid=self.hybrid)
            else:
                self.model_ = MultiSessionCEBRA(encoders, self._make_loss())
        self.history_ = []
        self.n_iter_ = 0

    def _encoder(self, session: int = 0) -> TimeSeriesEncoder:
        return self.model_.encoders[session] if isinstance(self.model_, MultiSessionCEBRA) else self.model_.encoder

    def _batch_size(self, sessions: list[Recording], sampler: Sampler) -> int:
        """``batch_size``, or with ``None`` every reference time point once per step (all sessions alike)."""
        if self.batch_size is not None:
            if len(sessions) > 1 and self.batch_size % len(sessions):
                raise ValueError(f"batch_size={self.batch_size} must be a multiple of the {len(sessions)} sessions")
            return int(self.batch_size)
        if len(sessions) > 1:
            return len(sessions) * min(len(sampler.reference_times(s)) for s in range(len(sessions)))
        return len(sampler.reference_times)

    def _pairing(self, sessions: list[Recording]) -> tuple[Sampler, Recording | MultiSessionRecording, Views]:
        """The sampler, the data it indexes and the window views, for these sessions and the fitted encoders."""
        encoder = self._encoder()
        sampler = self._sampler(sessions, encoder.left_context, encoder.right_context)
        if len(sessions) == 1:
            whole = encoder.time_stride == 1 and sessions[0].in_memory and self._whole_pass_pays(encoder, sessions[0])
            views = WholeRecordingViews(encoder.left_context) if whole else WindowViews.for_encoder(encoder)
            return sampler, sessions[0], views
        return sampler, MultiSessionRecording(sessions), MultiSessionWindowViews.for_encoder(encoder)

    def _whole_pass_pays(self, encoder: TimeSeriesEncoder, recording: Recording) -> bool:
        """Embed one valid pass over the recording per step rather than each window of the batch?

        Always for the full batch (``batch_size=None``); for a batch size, when
        the pass costs no more multiply-adds than the batch's windows
        (references, the positives the loss uses, negatives) and gives the
        same embeddings in train mode (:meth:`TimeSeriesEncoder.pass_matches_windows`:
        not with dropout, whose masks the pass would share between all windows).
        Both then give the same embeddings and gradients.
        """
        if self.batch_size is None:
            return True
        negatives = getattr(self, "num_negatives", None) or self.batch_size
        windows = self.batch_size * (2 if self.hybrid else 1) + self.batch_size + negatives
        per_windows = encoder.multiply_adds(windows, encoder.receptive_field)
        whole = encoder.multiply_adds(1, len(recording))
        cheaper = per_windows is not None and whole is not None and whole <= per_windows
        return cheaper and encoder.pass_matches_windows()

    def _train(self, sessions: list[Recording], steps: int, learning_rate: float | None = None) -> None:
        """``steps`` optimiser steps on ``sessions`` at ``learning_rate`` (``None``: ``self.learning_rate``)."""
        self._check_lengths(sessions)
        sampler, data, views = self._pairing(sessions)
        batch_size = self._batch_size(sessions, sampler)
        config = TrainerConfig(
            max_steps=steps,
            batch_size=batch_size,
            lr=float(self.learning_rate if learning_rate is None else learning_rate),
            weight_decay=self._weight_decay(),
            schedule="constant",
            device=_trainer_device(self.device),
            seed=self._seed + self.n_iter_,
            log_every=1,
            checkpoint_every=None,
            progress=self.verbose,
        )
        with forked_random_state():
            trainer = Trainer(self.model_, config, data, sampler, views)
            trainer.fit(resume=False)
        self.model_.to("cpu").eval()
        records = [{**record, "step": record["step"] + self.n_iter_} for record in trainer.history]
        self.history_ = self.history_ + records
        self.optimizer_state_ = _to_cpu(trainer.optimizer.state_dict())
        self.n_iter_ += steps
        negatives = getattr(self, "num_negatives", None) or batch_size // len(sessions)
        _warn_if_not_learning(records, negatives, 2 if self.hybrid else 1)

    def _weight_decay(self) -> float:
        return 0.0

    def fit(self, X: Any, y: Any = None, adapt: bool = False) -> ContrastiveEmbedding:
        """Train a new embedding on ``X`` ``(T, C)`` (or a list of sessions) with optional labels ``y``.

        ``y`` is one label array, a tuple ``(continuous, discrete)``, or (with
        several sessions) a list with one array per session. ``adapt=True``
        keeps a fitted single-session model and trains only a new input layer
        for ``X`` (which may have another number of channels) into the fitted
        space, for ``max_adapt_iterations`` steps.

        Every argument is checked before training; on an error in them a
        fitted estimator keeps its previous fit (as CEBRA's), and an error
        during training leaves it unfitted.
        """
        return self._fit(X, _as_label_tuple(y), adapt)

    def _fit(self, X: Any, labels: tuple, adapt: bool) -> ContrastiveEmbedding:
        self._check_params()
        if adapt:
            return self._adapt(X, labels)
        sessions = self._checked_new_data(X, labels)
        _warn_if_degenerate(sessions)
        self._build_model()
        try:
            self._train(sessions, int(self.max_iterations))
        except BaseException:
            del self.model_
            raise
        return self

    def _checked_new_data(self, X: Any, labels: tuple) -> list[Recording]:
        """The sessions of a new fit, checked; on an error the input attributes of the previous fit are kept."""
        saved = {name: getattr(self, name) for name in _INPUT_ATTRIBUTES if hasattr(self, name)}
        for name in saved:
            delattr(self, name)
        try:
            return self._recordings(X, labels, reset=True)
        except BaseException:
            for name in _INPUT_ATTRIBUTES:
                if hasattr(self, name):
                    delattr(self, name)
            for name, value in saved.items():
                setattr(self, name, value)
            raise

    def partial_fit(self, X: Any, y: Any = None) -> ContrastiveEmbedding:
        """Train ``max_iterations`` more steps on ``X``, ``y`` from the current weights (fits first if unfitted).

        The optimiser state starts afresh on each call; the data must have the
        layout (sessions, channels per session, label kind) the model was fitted on.
        """
        return self._partial_fit(X, _as_label_tuple(y))

    def _partial_fit(self, X: Any, labels: tuple) -> ContrastiveEmbedding:
        if not hasattr(self, "model_"):
            return self._fit(X, labels, adapt=False)
        self._check_params()
        self._train(self._recordings(X, labels, reset=False), int(self.max_iterations))
        return self

    def _adapt(self, X: Any, labels: tuple) -> ContrastiveEmbedding:
        """Train a new input layer for the single session ``X`` into the fitted space; everything else stays."""
        check_is_fitted(self, "model_")
        if self.n_sessions_ > 1 or _is_multi_session(X) or isinstance(X, MultiSessionRecording):
            raise NotImplementedError(
                "adapt=True is not implemented for multisession models or data: adapt a single-session model "
                "to one new session"
            )
        sessions = self._checked_new_data(X, labels)
        _warn_if_degenerate(sessions)
        old = self._encoder()
        with forked_random_state(self._seed + self.n_iter_):
            new = self._make_encoder(sessions[0].num_channels)
        with forked_random_state():
            input_layer = _input_layer_parameters(self._make_encoder)
        state = {name: value for name, value in old.state_dict().items() if name not in input_layer}
        new.load_state_dict(state, strict=False)
        self.model_.encoder = new
        trained = set(input_layer)
        for name, parameter in self.model_.named_parameters():
            parameter.requires_grad_(name.removeprefix("encoder.") in trained and name.startswith("encoder."))
        steps = int(self.max_iterations if self.max_adapt_iterations is None else self.max_adapt_iterations)
        rate = getattr(self, "adapt_learning_rate", None)
        try:
            self._train(sessions, steps, ADAPT_RATE_FACTOR * self.learning_rate if rate is None else rate)
        finally:
            for parameter in self.model_.parameters():
                parameter.requires_grad_(True)
        return self

    # ----------------------------------------------------------------- inference

    def _neural(self, X: Any, session: int | None) -> tuple[torch.Tensor, int]:
        name = self._session_argument
        if self.n_sessions_ > 1:
            if session is None:
                raise EstimatorInputError(
                    f"No {name} provided: a multisession model of {self.n_sessions_} sessions needs {name} "
                    "to choose the encoder of X"
                )
            if isinstance(session, bool) or not isinstance(session, (int, np.integer)):
                raise EstimatorInputError(f"Invalid {name} {session!r}: it must be an int in [0, {self.n_sessions_})")
            if not 0 <= session < self.n_sessions_:
                raise EstimatorInputError(f"Invalid {name} {session}: it must lie in [0, {self.n_sessions_})")
            channels = self.n_features_per_session_[session]
            X = _as_float32(X)
            if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] != channels:
                raise ValueError(f"X for {name} {session} must have shape (time, {channels}), got {X.shape}")
            if not np.isfinite(X).all():
                raise ValueError("X contains NaN or infinite values")
            return torch.from_numpy(X), int(session)
        if session not in (None, 0):
            raise EstimatorInputError(
                f"Invalid {name} {session!r}: a single-session model takes {name}=None or 0"
            )
        return torch.from_numpy(self._validated_X(_as_float32(X), reset=False)), 0

    def transform(
        self, X: Any, session: int | None = None, batch_size: int | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Embed ``X`` ``(T, C)`` into ``(T, output_dimension)`` float32 (one row per time point).

        Edges are handled by repeating the first and last samples over the
        encoder's context (a subsampling architecture gives one row per
        ``time_stride`` time points). ``session`` picks the encoder of a
        multi-session model; without it, a multi-session model takes a list
        with one array per session and returns a list of their embeddings.
        ``batch_size`` bounds the time points embedded at once (memory), with
        the same result. ``X`` may be a :class:`Recording` (or
        :class:`MultiSessionRecording`), whose neural data is then read whole.
        """
        check_is_fitted(self, "model_")
        if isinstance(X, Recording):
            X = X.read_neural().numpy()
        elif isinstance(X, MultiSessionRecording):
            X = [recording.read_neural().numpy() for recording in X]
        if self.n_sessions_ > 1 and session is None and _is_multi_session(X):
            if len(X) != self.n_sessions_:
                raise ValueError(f"X holds {len(X)} sessions, but the model was fitted on {self.n_sessions_}")
            return [self.transform(x, session=s, batch_size=batch_size) for s, x in enumerate(X)]
        return self._embed(X, session, batch_size, pad=True)

    def _embed(self, X: Any, session: int | None, batch_size: int | None, pad: bool) -> np.ndarray:
        neural, session = self._neural(X, session)
        encoder = self._encoder(session)
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
                raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")
            if batch_size < encoder.receptive_field:
                raise ValueError(
                    f"batch_size={batch_size}: at least {encoder.receptive_field} time points are required by the "
                    f"offset (receptive field) of {self.model_architecture!r}; a batch of this length is too short"
                )
        if not pad and len(neural) < encoder.receptive_field:
            raise ValueError(
                f"X has {len(neural)} time points; without padding the receptive field of "
                f"{self.model_architecture!r} needs at least {encoder.receptive_field}"
            )
        with torch.no_grad():
            return embed_in_batches(encoder, neural, batch_size, pad).numpy()

    def score(self, X: Any, y: Any = None, num_batches: int = 10) -> float:
        """Negative InfoNCE loss on ``X``, ``y`` (higher is better, as GridSearchCV expects).

        The mean over ``num_batches`` batches of ``batch_size`` pairs; batch
        ``b`` is drawn with the generator ``generator_for(0, b)``, so two models
        are scored on the same pairs.
        """
        check_is_fitted(self, "model_")
        sessions = self._recordings(X, _as_label_tuple(y), reset=False)
        self._check_lengths(sessions)
        sampler, data, views = self._pairing(sessions)
        batch_size = self._batch_size(sessions, sampler)
        losses = []
        with torch.no_grad():
            for batch_index in range(num_batches):
                pairs = sampler.sample(batch_size, generator_for(0, batch_index))
                batch = views(data, pairs, generator_for(0, batch_index, 1))
                losses.append(float(self.model_.training_step(batch).loss))
        return -float(np.mean(losses))

    def to(self, device: str | torch.device) -> ContrastiveEmbedding:
        """Train (and keep the fitted weights) on ``device`` from now on; returns ``self``."""
        device = str(device)
        _trainer_device(device)
        self.device = device
        return self

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write parameters, fitted attributes and weights to ``path`` atomically (loadable without pickle)."""
        check_is_fitted(self, "model_")
        params = self.get_params()
        if not (params.get("random_state") is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = None  # a RandomState object is not plain data; the weights carry the result
        state = {
            "format": SAVE_FORMAT,
            "estimator": type(self).__name__,
            "params": {key: (int(v) if isinstance(v, np.integer) else v) for key, v in params.items()},
            "fitted": {
                "n_sessions_": self.n_sessions_,
                "n_features_per_session_": list(self.n_features_per_session_),
                "label_kind_": self.label_kind_,
                "n_iter_": self.n_iter_,
                "seed": self._seed,
            },
            "history": copy.deepcopy(self.history_),
            "optimizer": self.optimizer_state_,
            "model": self.model_.state_dict(),
        }
        save_checkpoint(Path(path), state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContrastiveEmbedding:
        """Read an estimator written by :meth:`save` of this class or of :class:`~contrastive_seq.cebra_api.CEBRA`.

        ``torch.load(weights_only=True)``: no code runs. Parameters the other
        class lacks are left at this class's defaults.
        """
        state = load_checkpoint(Path(path))
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a ContrastiveEmbedding file of format {SAVE_FORMAT}")
        accepted = cls().get_params()
        estimator = cls(**{key: value for key, value in state["params"].items() if key in accepted})
        estimator._check_params()
        fitted = state["fitted"]
        estimator.n_sessions_ = fitted["n_sessions_"]
        estimator.n_features_per_session_ = fitted["n_features_per_session_"]
        estimator.label_kind_ = fitted["label_kind_"]
        if estimator.n_sessions_ == 1:
            estimator.n_features_in_ = estimator.n_features_per_session_[0]
        estimator._build_model()
        estimator._seed = fitted["seed"]
        estimator.model_.load_state_dict(state["model"])
        estimator.model_.eval()
        estimator.n_iter_ = fitted["n_iter_"]
        estimator.history_ = state["history"]
        estimator.optimizer_state_ = state.get("optimizer", {})
        return estimator


def expected_failed_checks(estimator: ContrastiveEmbedding) -> dict[str, str]:
    """The scikit-learn checks ``estimator`` fails by design, with the reason (sklearn's ``expected_failed_checks``).

    Use as ``check_estimator(est, expected_failed_checks=expected_failed_checks(est))``
    or ``parametrize_with_checks([est], expected_failed_checks=expected_failed_checks)``.
    An encoder whose receptive field spans several time points embeds each
    row from its neighbours, so reordering the rows or embedding a subset
    changes the result; a receptive field of one time point fails none.
    """
    with forked_random_state():
        encoder = make_architecture(estimator.model_architecture, 1, 1, 2)
    if encoder.receptive_field == 1:
        return {}
    reason = (
        f"{estimator.model_architecture!r} embeds each time point from a window of {encoder.receptive_field} "
        "neighbouring rows, so the embedding of a row depends on the rows around it"
    )
    return {
        "check_methods_sample_order_invariance": f"{reason}: reordering the rows changes it",
        "check_methods_subset_invariance": f"{reason}: embedding a subset of the rows changes it",
    }


def embed_in_batches(encoder: TimeSeriesEncoder, x: torch.Tensor, batch_size: int | None, pad: bool) -> torch.Tensor:
    """Embed a recording ``(T, C)`` in pieces of about ``batch_size`` time points: ``(T', D)``.

    With ``pad`` the recording is replicate-padded by the encoder's context,
    so ``T' = ceil(T / time_stride)`` (every time point embedded, as
    ``encoder.embed_sequence``); without it only whole windows count,
    ``T' = (T - receptive_field) // time_stride + 1``. Each piece carries its
    own context, so the result does not depend on ``batch_size`` (``None``:
    one piece).
    """
    sequence = rearrange(x, "t c -> 1 c t")
    if pad:
        sequence = F.pad(sequence, (encoder.left_context, encoder.right_context), mode="replicate")
    stride, field = encoder.time_stride, encoder.receptive_field
    rows = (sequence.shape[-1] - field) // stride + 1
    per_piece = rows if batch_size is None else max(1, batch_size // stride)
    pieces = [
        encoder._valid_pass(sequence[..., start * stride : (min(start + per_piece, rows) - 1) * stride + field])
        for start in range(0, rows, per_piece)
    ]
    return rearrange(torch.cat(pieces, dim=-1), "1 d t -> t d")


def _trainer_device(device: object) -> str:
    """The Trainer's device for an estimator's ``device`` (CEBRA's names included); errors name ``device``."""
    if device in ("auto", "cuda_if_available"):
        return "auto"
    if device in ("cpu", "cuda"):
        return device
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        if int(device[5:]) != 0:
            raise ValueError(f"device={device!r}: only cuda:0 (the current device) is supported; use 'cuda'")
        return "cuda"
    raise ValueError(f"device must be one of {DEVICES} or 'cuda:0', got {device!r}")


def _as_label_tuple(y: Any) -> tuple:
    """ContrastiveEmbedding's ``y`` as a tuple of label arrays (CEBRA's ``*y``)."""
    if y is None:
        return ()
    return tuple(y) if isinstance(y, tuple) else (y,)


def _is_array_like(value: object) -> bool:
    """An array or tensor (as opposed to a list of per-session arrays)."""
    return isinstance(value, (np.ndarray, torch.Tensor))


def _as_float32(X: Any) -> Any:
    """Tensors and arrays as float32 NumPy arrays; anything else unchanged (scikit-learn checks it)."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy().astype(np.float32)
    if isinstance(X, np.ndarray) and X.dtype.kind in "iufb":
        return X.astype(np.float32)
    return X


def _to_cpu(value: Any) -> Any:
    """An optimiser state (tensors in dicts and lists) with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _input_layer_parameters(make_encoder: Any) -> list[str]:
    """Names of the parameters of the modules whose shapes depend on the input width (the input layer).

    Found by building the architecture for two input widths and comparing
    shapes; every parameter of a module that owns a changed one is included
    (a convolution's bias with its weight).
    """
    one, two = make_encoder(1).state_dict(), make_encoder(2).state_dict()
    changed = {name.rsplit(".", 1)[0] for name in one if one[name].shape != two[name].shape}
    return [name for name in one if name.rsplit(".", 1)[0] in changed]


def _warn_if_degenerate(sessions: list[Recording]) -> None:
    """Warn, before training, about data that cannot give a useful embedding."""
    for s, recording in enumerate(sessions):
        name = "X" if len(sessions) == 1 else f"X[{s}]"
        if recording.in_memory:
            neural = recording.neural
            if bool((neural == neural[:1]).all()):
                warn_at_caller(
                    f"{name} is constant over time (as float32): every window looks the same and the embedding "
                    "cannot learn anything; check the data (or its scale, if large values collapsed in float32)",
                    DegenerateInputWarning,
                )
        if recording.discrete is not None and len(torch.unique(recording.discrete)) == len(recording):
            label = "y" if len(sessions) == 1 else f"y[{s}]"
            warn_at_caller(
                f"{label}: every discrete label is distinct, so every positive is its own reference; "
                "discrete labels should name classes shared by many time points (pass floats for continuous labels)",
                DegenerateInputWarning,
            )


def _warn_if_not_learning(records: list[dict], negatives: int, losses: int) -> None:
    """Warn when every loss of a fit of at least 50 steps stayed within 1% of chance, ``losses * ln(negatives)``.

    At chance every candidate scores alike, as when the embedding collapsed
    to one point; shorter fits are not judged (their loss has barely moved).
    """
    chance = losses * float(np.log(negatives))
    values = np.array([record["loss"] for record in records if "loss" in record], dtype=float)
    if len(values) >= 50 and chance > 0 and bool(np.all(np.abs(values - chance) <= 0.01 * chance)):
        warn_at_caller(
            f"the loss never left chance level, ln(candidates) = {chance:.3f} (within 1%) over {len(values)} steps: "
            "the embedding learned nothing; check for constant input, labels that pair nothing, or train longer",
            DegenerateInputWarning,
        )


def _split_labels(labels: tuple, name: str, length: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``labels`` (a tuple of arrays, each ``length`` long) as ``(continuous, discrete)``.

    Floating arrays are continuous (their columns joined in order), integer
    arrays discrete (at most one). ``name`` is how errors call ``y``
    (``y[i]`` for the i-th of several arrays).
    """
    continuous, discrete = [], None
    for i, label in enumerate(labels):
        item = f"{name}[{i}]" if len(labels) > 1 else name
        values = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        if values.dtype.kind == "f":
            if values.ndim not in (1, 2) or values.shape[0] != length:
                raise ValueError(
                    f"Invalid number of samples: {item} (continuous) must have shape ({length},) or ({length}, k) "
                    f"to match the data, got {values.shape}"
                )
            if not np.isfinite(values).all():
                raise ValueError(f"{item} contains NaN or infinite values (continuous labels)")
            continuous.append(values.astype(np.float32).reshape(length, -1) if len(labels) > 1 else values)
        elif values.dtype.kind in "iub":
            if values.shape != (length,):
                raise ValueError(
                    f"Invalid number of samples: {item} (discrete) must have shape ({length},) to match the data, "
                    f"got {values.shape}"
                )
            if discrete is not None:
                raise ValueError(f"{item}: at most one discrete (integer) label array is allowed, got a second")
            discrete = values.astype(np.int64)
        else:
            raise TypeError(
                f"Unknown label type: {item} must hold floats (continuous) or integers (discrete), "
                f"got dtype {values.dtype}"
            )
    if not continuous:
        return None, discrete
    joined = continuous[0] if len(continuous) == 1 else np.concatenate(continuous, axis=1)
    return joined.astype(np.float32), discrete


def _checked_session(X: Any, labels: tuple, x_name: str, y_name: str) -> Recording:
    """One session's ``X (T, C)`` and label arrays as a :class:`Recording`; errors name ``x_name`` / ``y_name``."""
    neural = np.asarray(_as_float32(X), dtype=np.float32)
    if neural.ndim != 2 or neural.shape[0] < 2 or neural.shape[1] < 1:
        raise ValueError(f"{x_name} must have shape (time >= 2, channels >= 1), got {neural.shape}")
    if not np.isfinite(neural).all():
        raise ValueError(f"{x_name} contains NaN or infinite values")
    continuous, discrete = _split_labels(labels, y_name, neural.shape[0])
    return Recording(neural, continuous, discrete)
