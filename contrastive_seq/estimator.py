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
their continuous labels (one shared meaning); each session gets its own
encoder into one shared space, ``transform(X, session=s)`` embeds session
``s`` and ``transform(list_of_sessions)`` all of them. ``X`` may also be a :class:`~contrastive_seq.data.recording.Recording`
(an HDF5-backed one trains without loading the neural data) or a
:class:`~contrastive_seq.data.recording.MultiSessionRecording`, whose labels are used.

Every argument is checked before training starts; errors name the argument
(``X``, ``y``, ``X[s]``, ``y[s]``, ``session`` or the parameter). Training
runs on the one :class:`~contrastive_seq.training.Trainer`; the estimator
leaves the global random streams (torch, NumPy, Python) as it found them.
:meth:`ContrastiveEmbedding.save` / :meth:`ContrastiveEmbedding.load` write
and read plain tensors and containers (``torch.load(weights_only=True)``):
loading never runs code.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from contrastive_seq.data.recording import MultiSessionRecording, Recording
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.methods.cebra import CEBRA, MultiSessionCEBRA
from contrastive_seq.models.timeseries import (
    TIME_SERIES_ENCODERS,
    make_time_series_encoder,
)
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.sampling.behaviour import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
)
from contrastive_seq.sampling.multisession import MultiSessionSampler
from contrastive_seq.sampling.time import TimeContrastiveSampler
from contrastive_seq.seeding import generator_for
from contrastive_seq.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from contrastive_seq.training.trainer import Trainer, TrainerConfig
from contrastive_seq.views.base import Views
from contrastive_seq.views.windows import MultiSessionWindowViews, WindowViews

CONDITIONALS = ("time_delta", "delta")
DISTANCES = {"cosine": ("cosine", True), "euclidean": ("neg_sq_euclidean", False), "dot": ("dot", False)}
TEMPERATURE_MODES = ("constant", "auto")
SAVE_FORMAT = 1


def _is_multi_session(X: object) -> bool:
    """A list of 2-D arrays (one per session), as opposed to one 2-D array-like."""
    if isinstance(X, MultiSessionRecording):
        return True
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(x) == 2 for x in X)


class ContrastiveEmbedding(TransformerMixin, BaseEstimator):
    """Contrastive embedding of neural (or any) time series, with or without behaviour labels.

    Parameter names follow CEBRA's where they mean the same.

    Args:
        model_architecture: the encoder, one of
            :data:`contrastive_seq.models.timeseries.TIME_SERIES_ENCODERS`
            (``"offset1-mlp"``, ``"offset5"``, ``"offset10"``, ``"offset36"``).
        output_dimension: D, the embedding's dimension.
        num_hidden_units: width of the encoder's hidden layers.
        conditional: target of continuous-behaviour positives: ``"time_delta"``
            (the reference's label plus an empirical label change over
            ``time_offsets`` steps) or ``"delta"`` (plus Gaussian noise of scale ``delta``).
        time_offsets: Δ of time positives and of ``time_delta`` label changes.
        delta: noise scale of the ``"delta"`` conditional, in label units.
        hybrid: add a time-contrastive loss to a behaviour loss (needs ``y``).
        distance: ``"cosine"`` (embedding on the unit sphere), ``"euclidean"``
            (negative squared distance) or ``"dot"``.
        temperature: τ (initial τ when learnable).
        temperature_mode: ``"constant"`` or ``"auto"`` (learned, at least ``min_temperature``).
        min_temperature: lower bound of a learned τ.
        batch_size: references per step (a multiple of the number of sessions).
        num_negatives: shared negatives per step (``None``: ``batch_size``).
        learning_rate: Adam(W) learning rate, constant.
        max_iterations: optimiser steps per ``fit`` (and per ``partial_fit``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        verbose: show a progress bar.
        random_state: ``None``, an int or a ``numpy.random.RandomState``.

    Fitted attributes:
        n_features_in_: channels of the (single-session) input.
        n_sessions_: number of sessions trained on.
        n_features_per_session_: channels of each session.
        label_kind_: ``"none"``, ``"continuous"``, ``"discrete"`` or ``"mixed"``.
        model_: the trained :class:`~contrastive_seq.methods.base.Method`.
        history_: records logged during training (step, loss, parts such as
            ``temperature``, ``alignment``, ``uniformity``).
        n_iter_: optimiser steps taken in total.
    """

    def __init__(
        self,
        model_architecture: str = "offset10",
        output_dimension: int = 8,
        num_hidden_units: int = 32,
        conditional: str = "time_delta",
        time_offsets: int = 10,
        delta: float = 0.1,
        hybrid: bool = False,
        distance: str = "cosine",
        temperature: float = 1.0,
        temperature_mode: str = "constant",
        min_temperature: float = 0.1,
        batch_size: int = 512,
        num_negatives: int | None = None,
        learning_rate: float = 3e-4,
        max_iterations: int = 1000,
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

        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

        def positive_number(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

        for name in ("output_dimension", "num_hidden_units", "time_offsets", "batch_size", "max_iterations"):
            positive_int(name)
        if self.num_negatives is not None:
            positive_int("num_negatives")
        for name in ("delta", "temperature", "min_temperature", "learning_rate"):
            positive_number(name)
        for name, choices in (
            ("model_architecture", tuple(TIME_SERIES_ENCODERS)),
            ("conditional", CONDITIONALS),
            ("distance", tuple(DISTANCES)),
            ("temperature_mode", TEMPERATURE_MODES),
            ("device", ("auto", "cpu", "cuda")),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.temperature_mode == "auto" and self.temperature < self.min_temperature:
            raise ValueError(
                f"temperature={self.temperature} must be >= min_temperature={self.min_temperature} "
                "with temperature_mode='auto'"
            )
        if not isinstance(self.hybrid, bool) or not isinstance(self.verbose, bool):
            raise ValueError(f"hybrid and verbose must be bools, got {self.hybrid!r} and {self.verbose!r}")

    def _make_encoder(self, in_channels: int) -> torch.nn.Module:
        return make_time_series_encoder(
            self.model_architecture,
            in_channels,
            self.output_dimension,
            hidden_dim=self.num_hidden_units,
            normalize=DISTANCES[self.distance][1],
        )

    def _make_loss(self) -> InfoNCE:
        return cebra_loss(self.distance, float(self.temperature), self.temperature_mode, float(self.min_temperature))

    # ----------------------------------------------------------------- data

    def _recordings(self, X: Any, y: Any, reset: bool) -> list[Recording]:
        """The training data as recordings (one per session), checked; sets the input attributes when ``reset``."""
        if isinstance(X, (Recording, MultiSessionRecording)):
            if y is not None:
                raise ValueError("y must be None when X is a Recording: its labels are used")
            sessions = [X] if isinstance(X, Recording) else list(X)
        elif _is_multi_session(X):
            if y is None:
                labels = [None] * len(X)
            elif isinstance(y, (list, tuple)) and len(y) == len(X):
                labels = list(y)
            else:
                raise ValueError(f"y must be None or a list of {len(X)} per-session label arrays, like X")
            sessions = [
                _checked_session(x, label, f"X[{s}]", f"y[{s}]") for s, (x, label) in enumerate(zip(X, labels))
            ]
        else:
            X = self._validated_X(X, reset=reset, ensure_min_samples=2)
            sessions = [_checked_session(X, y, "X", "y")]
        if reset:
            self.n_sessions_ = len(sessions)
            self.n_features_per_session_ = [recording.num_channels for recording in sessions]
            if len(sessions) == 1 and not hasattr(self, "n_features_in_"):
                self.n_features_in_ = sessions[0].num_channels
            self.label_kind_ = _label_kind(sessions[0])
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
        by_time = self.label_kind_ == "none" or self.hybrid
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
        if _label_kind(sessions[0]) != self.label_kind_:
            raise ValueError(f"y gives {_label_kind(sessions[0])} labels, but the model was fitted on {self.label_kind_}")

    def _sampler(self, sessions: list[Recording], left: int, right: int) -> Sampler:
        """The sampler for this data and these hyper-parameters (the label kind decides)."""
        return cebra_sampler(
            sessions,
            conditional=self.conditional,
            delta=float(self.delta),
            time_offsets=int(self.time_offsets),
            hybrid=self.hybrid,
            left_context=left,
            right_context=right,
            num_negatives=self.num_negatives,
        )

    # ----------------------------------------------------------------- training

    def _build_model(self) -> None:
        """Fresh encoders and loss for the fitted input layout, seeded from ``random_state``."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._seed = seed
        with _global_random_state_kept():
            torch.manual_seed(seed)
            encoders = [self._make_encoder(channels) for channels in self.n_features_per_session_]
            if len(encoders) == 1:
                self.model_ = CEBRA(encoders[0], self._make_loss(), hybrid=self.hybrid)
            else:
                self.model_ = MultiSessionCEBRA(encoders, self._make_loss())
        self.history_ = []
        self.n_iter_ = 0

    def _encoder(self, session: int = 0) -> torch.nn.Module:
        return self.model_.encoders[session] if isinstance(self.model_, MultiSessionCEBRA) else self.model_.encoder

    def _pairing(self, sessions: list[Recording]) -> tuple[Sampler, Recording | MultiSessionRecording, Views]:
        """The sampler, the data it indexes and the window views, for these sessions and the fitted encoders."""
        encoder = self._encoder()
        sampler = self._sampler(sessions, encoder.left_context, encoder.right_context)
        if len(sessions) == 1:
            return sampler, sessions[0], WindowViews.for_encoder(encoder)
        if self.batch_size % len(sessions):
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of the {len(sessions)} sessions")
        return sampler, MultiSessionRecording(sessions), MultiSessionWindowViews.for_encoder(encoder)

    def _train(self, sessions: list[Recording]) -> None:
        self._check_lengths(sessions)
        sampler, data, views = self._pairing(sessions)
        config = TrainerConfig(
            max_steps=int(self.max_iterations),
            batch_size=int(self.batch_size),
            lr=float(self.learning_rate),
            schedule="constant",
            device=self.device,
            seed=self._seed + self.n_iter_,
            log_every=max(1, int(self.max_iterations) // 100),
            checkpoint_every=None,
            progress=self.verbose,
        )
        with _global_random_state_kept():
            trainer = Trainer(self.model_, config, data, sampler, views)
            trainer.fit(resume=False)
        self.model_.to("cpu").eval()
        self.history_ = self.history_ + [{**record, "step": record["step"] + self.n_iter_} for record in trainer.history]
        self.n_iter_ += int(self.max_iterations)

    def fit(self, X: Any, y: Any = None) -> ContrastiveEmbedding:
        """Train a new embedding on ``X`` ``(T, C)`` (or a list of sessions) with optional labels ``y``.

        Every argument is checked before training; on an error the estimator is left unfitted.
        """
        self._check_params()
        for attribute in ("n_features_in_", "model_"):
            if hasattr(self, attribute):
                delattr(self, attribute)
        sessions = self._recordings(X, y, reset=True)
        self._build_model()
        try:
            self._train(sessions)
        except BaseException:
            del self.model_
            raise
        return self

    def partial_fit(self, X: Any, y: Any = None) -> ContrastiveEmbedding:
        """Train ``max_iterations`` more steps on ``X``, ``y`` from the current weights (fits first if unfitted).

        The optimiser state starts afresh on each call; the data must have the
        layout (sessions, channels per session, label kind) the model was fitted on.
        """
        if not hasattr(self, "model_"):
            return self.fit(X, y)
        self._check_params()
        self._train(self._recordings(X, y, reset=False))
        return self

    # ----------------------------------------------------------------- inference

    def _neural(self, X: Any, session: int | None) -> tuple[torch.Tensor, int]:
        if self.n_sessions_ > 1:
            if isinstance(session, bool) or not isinstance(session, (int, np.integer)):
                raise ValueError(f"session must be an int in [0, {self.n_sessions_}) for a multi-session model")
            if not 0 <= session < self.n_sessions_:
                raise ValueError(f"session must lie in [0, {self.n_sessions_}), got {session}")
            channels = self.n_features_per_session_[session]
            X = np.asarray(X, dtype=np.float32)
            if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] != channels:
                raise ValueError(f"X for session {session} must have shape (time, {channels}), got {X.shape}")
            if not np.isfinite(X).all():
                raise ValueError("X contains NaN or infinite values")
            return torch.from_numpy(X), int(session)
        if session not in (None, 0):
            raise ValueError(f"session must be None or 0 for a single-session model, got {session!r}")
        return torch.from_numpy(self._validated_X(X, reset=False)), 0

    def transform(self, X: Any, session: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Embed ``X`` ``(T, C)`` into ``(T, output_dimension)`` float32 (one row per time point).

        Edges are handled by repeating the first and last samples over the
        encoder's context. ``session`` picks the encoder of a multi-session
        model; without it, a multi-session model takes a list with one array
        per session and returns a list of their embeddings. ``X`` may be a
        :class:`Recording` (or :class:`MultiSessionRecording`), whose neural
        data is then read whole.
        """
        check_is_fitted(self, "model_")
        if isinstance(X, Recording):
            X = X.read_neural().numpy()
        elif isinstance(X, MultiSessionRecording):
            X = [recording.read_neural().numpy() for recording in X]
        if self.n_sessions_ > 1 and session is None and _is_multi_session(X):
            if len(X) != self.n_sessions_:
                raise ValueError(f"X holds {len(X)} sessions, but the model was fitted on {self.n_sessions_}")
            return [self.transform(x, session=s) for s, x in enumerate(X)]
        neural, session = self._neural(X, session)
        with torch.no_grad():
            return self._encoder(session).embed_sequence(neural).numpy()

    def score(self, X: Any, y: Any = None, num_batches: int = 10) -> float:
        """Negative InfoNCE loss on ``X``, ``y`` (higher is better, as GridSearchCV expects).

        The mean over ``num_batches`` batches of ``batch_size`` pairs; batch
        ``b`` is drawn with the generator ``generator_for(0, b)``, so two models
        are scored on the same pairs.
        """
        check_is_fitted(self, "model_")
        sessions = self._recordings(X, y, reset=False)
        self._check_lengths(sessions)
        sampler, data, views = self._pairing(sessions)
        losses = []
        with torch.no_grad():
            for batch_index in range(num_batches):
                pairs = sampler.sample(int(self.batch_size), generator_for(0, batch_index))
                batch = views(data, pairs, generator_for(0, batch_index, 1))
                losses.append(float(self.model_.training_step(batch).loss))
        return -float(np.mean(losses))

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write parameters, fitted attributes and weights to ``path`` atomically (loadable without pickle)."""
        check_is_fitted(self, "model_")
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = None  # a RandomState object is not plain data; the weights carry the result
        state = {
            "format": SAVE_FORMAT,
            "params": {key: (int(v) if isinstance(v, np.integer) else v) for key, v in params.items()},
            "fitted": {
                "n_sessions_": self.n_sessions_,
                "n_features_per_session_": list(self.n_features_per_session_),
                "label_kind_": self.label_kind_,
                "n_iter_": self.n_iter_,
                "seed": self._seed,
            },
            "history": copy.deepcopy(self.history_),
            "model": self.model_.state_dict(),
        }
        save_checkpoint(Path(path), state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContrastiveEmbedding:
        """Read an estimator written by :meth:`save` (``torch.load(weights_only=True)``: no code runs)."""
        state = load_checkpoint(Path(path))
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a ContrastiveEmbedding file of format {SAVE_FORMAT}")
        estimator = cls(**state["params"])
        estimator._check_params()
        fitted = state["fitted"]
        estimator.n_sessions_ = fitted["n_sessions_"]
        estimator.n_features_per_session_ = fitted["n_features_per_session_"]
        estimator.label_kind_ = fitted["label_kind_"]
        if estimator.n_sessions_ == 1:
            estimator.n_features_in_ = estimator.n_features_per_session_[0]
        estimator.random_state = state["params"]["random_state"]
        estimator._build_model()
        estimator._seed = fitted["seed"]
        estimator.model_.load_state_dict(state["model"])
        estimator.model_.eval()
        estimator.n_iter_ = fitted["n_iter_"]
        estimator.history_ = state["history"]
        return estimator


def cebra_loss(
    distance: str = "cosine", temperature: float = 1.0, temperature_mode: str = "constant", min_temperature: float = 0.1
) -> InfoNCE:
    """CEBRA's decoupled InfoNCE for a ``distance`` of :data:`DISTANCES`, with a fixed or learned temperature.

    ``temperature_mode="auto"`` learns τ, bounded below by ``min_temperature``.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {tuple(DISTANCES)}, got {distance!r}")
    if temperature_mode not in TEMPERATURE_MODES:
        raise ValueError(f"temperature_mode must be one of {TEMPERATURE_MODES}, got {temperature_mode!r}")
    low = min_temperature if temperature_mode == "auto" else min(temperature, 0.01)
    return InfoNCE(
        decoupled=True,
        similarity=DISTANCES[distance][0],
        temperature=float(temperature),
        learnable_temperature=temperature_mode == "auto",
        temperature_bounds=(float(low), max(100.0, float(temperature))),
    )


def cebra_sampler(
    sessions: list[Recording],
    conditional: str = "time_delta",
    delta: float = 0.1,
    time_offsets: int = 10,
    hybrid: bool = False,
    left_context: int = 0,
    right_context: int = 0,
    num_negatives: int | None = None,
) -> Sampler:
    """The sampler CEBRA would pair ``sessions`` with, chosen by the labels they carry.

    One session: no labels gives time pairs (positive ``t + time_offsets``);
    continuous labels the ``conditional`` (``"time_delta"`` / ``"delta"``)
    behaviour sampler; discrete labels same-label pairs; both the mixed
    sampler; ``hybrid=True`` adds time positives to a behaviour sampler.
    Several sessions need continuous labels and give the multi-session
    sampler. ``left_context`` / ``right_context`` are the encoder's margins;
    one session's ``segments`` keep windows and time positives inside a segment.
    """
    margins = {"left_context": left_context, "right_context": right_context, "num_negatives": num_negatives}
    targets = {"mode": conditional, "delta": delta, "time_delta": time_offsets}
    if len(sessions) > 1:
        if any(recording.continuous is None for recording in sessions):
            raise ValueError("several sessions need continuous labels y for every session (the shared behaviour)")
        if hybrid:
            raise ValueError("hybrid=True is not available for several sessions")
        return MultiSessionSampler([recording.continuous for recording in sessions], **targets, **margins)
    recording = sessions[0]
    margins["segments"] = recording.segments  # no window and no time positive crosses a segment boundary
    kind = _label_kind(recording)
    if kind == "none":
        if hybrid:
            raise ValueError("hybrid=True needs behaviour labels y")
        return TimeContrastiveSampler(len(recording), time_offsets, **margins)
    if kind == "continuous":
        behaviour = ContinuousBehaviourSampler(recording.continuous, **targets, **margins)
    elif kind == "discrete":
        behaviour = DiscreteBehaviourSampler(recording.discrete, allow_singletons=True, **margins)
    else:
        behaviour = MixedBehaviourSampler(recording.discrete, recording.continuous, **targets, **margins)
    return HybridSampler(behaviour, time_offsets) if hybrid else behaviour


@contextmanager
def _global_random_state_kept() -> Iterator[None]:
    """Restore torch's, NumPy's and Python's global random streams on exit (training seeds them)."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def _split_labels(y: Any, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``y`` as ``(continuous, discrete)``: float arrays are continuous, integer arrays discrete.

    ``name`` is how errors call ``y``. Shapes are checked by :func:`_checked_session`.
    """
    if y is None:
        return None, None
    if isinstance(y, tuple):
        if len(y) != 2:
            raise ValueError(f"{name} as a tuple must be (continuous, discrete), got {len(y)} items")
        continuous, _ = _split_labels(np.asarray(y[0]), f"{name}[0]")
        _, discrete = _split_labels(np.asarray(y[1]), f"{name}[1]")
        if continuous is None:
            raise TypeError(f"{name}[0] (continuous) must be floating point, got dtype {np.asarray(y[0]).dtype}")
        if discrete is None:
            raise TypeError(f"{name}[1] (discrete) must be integers, got dtype {np.asarray(y[1]).dtype}")
        return continuous, discrete
    labels = np.asarray(y)
    if labels.dtype.kind == "f":
        return labels.astype(np.float32), None
    if labels.dtype.kind in "iub":
        return None, labels.astype(np.int64)
    raise TypeError(
        f"Unknown label type: {name} must hold floats (continuous) or integers (discrete), got dtype {labels.dtype}"
    )


def _checked_session(X: Any, y: Any, x_name: str, y_name: str) -> Recording:
    """One session's ``X (T, C)`` and labels ``y`` as a :class:`Recording`; errors name ``x_name`` / ``y_name``."""
    neural = np.asarray(X, dtype=np.float32)
    if neural.ndim != 2 or neural.shape[0] < 2 or neural.shape[1] < 1:
        raise ValueError(f"{x_name} must have shape (time >= 2, channels >= 1), got {neural.shape}")
    if not np.isfinite(neural).all():
        raise ValueError(f"{x_name} contains NaN or infinite values")
    continuous, discrete = _split_labels(y, y_name)
    length = neural.shape[0]
    if continuous is not None:
        name = f"{y_name}[0]" if discrete is not None else y_name
        if continuous.ndim not in (1, 2) or continuous.shape[0] != length:
            raise ValueError(
                f"{name} (continuous) must have shape ({length},) or ({length}, k) to match {x_name}, "
                f"got {continuous.shape}"
            )
        if not np.isfinite(continuous).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    if discrete is not None:
        name = f"{y_name}[1]" if continuous is not None else y_name
        if discrete.shape != (length,):
            raise ValueError(f"{name} (discrete) must have shape ({length},) to match {x_name}, got {discrete.shape}")
    return Recording(neural, continuous, discrete)


def _label_kind(recording: Recording) -> str:
    has_continuous, has_discrete = recording.continuous is not None, recording.discrete is not None
    return {(False, False): "none", (True, False): "continuous", (False, True): "discrete"}.get(
        (has_continuous, has_discrete), "mixed"
    )

