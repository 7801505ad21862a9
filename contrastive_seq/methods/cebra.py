"""CEBRA-style contrastive embedding of time series (Schneider, Lee & Mathis 2023).

A reference window, its positive window (chosen by time, by behaviour, or
both) and a shared set of negative windows are embedded by one encoder and
scored with the decoupled InfoNCE of the loss core: the positive is left out
of the denominator, as in CEBRA.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from contrastive_seq.data.recording import Recording
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.sampling.behaviour import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
)
from contrastive_seq.sampling.multisession import (
    MultiSessionDiscreteSampler,
    MultiSessionSampler,
    MultiSessionTimeSampler,
)
from contrastive_seq.sampling.time import TimeContrastiveSampler
from contrastive_seq.views.base import Views

CONDITIONALS = ("time_delta", "delta")
DISTANCES = {"cosine": ("cosine", True), "euclidean": ("neg_sq_euclidean", False), "dot": ("dot", False)}
TEMPERATURE_MODES = ("constant", "auto")


class CEBRA(Method):
    """One encoder for reference, positive and negative windows; InfoNCE against shared negatives.

    Batch (from :class:`contrastive_seq.views.windows.WindowViews`):
    ``{"reference": (N, C, W), "positive": (P, N, C, W), "negative": (M, C, W)}``;
    or (from :class:`WholeRecordingViews`) ``{"recording": (1, C, T),
    "reference": (N,), "positive": (P, N), "negative": (M,)}``, the pairs as
    rows of the recording's valid embedding, embedded in one pass.

    With ``hybrid=False`` the loss uses positive column 0. With ``hybrid=True``
    the sampler's column 0 is the time positive and column 1 the behaviour
    positive: the behaviour loss scores the first ``behaviour_dimensions``
    embedding dimensions, the time loss all of them, and the two are added
    (CEBRA-Hybrid).

    Args:
        encoder: windows ``(N, C, W) -> (N, D)``, with ``embed_sequence((T, C)) -> (T, D)``.
        loss: the InfoNCE to use (``decoupled=True`` is CEBRA's form).
        hybrid: add a time-contrastive loss to the behaviour loss.
        behaviour_dimensions: leading dimensions the behaviour loss sees in hybrid mode.
    """

    def __init__(self, encoder: nn.Module, loss: InfoNCE, hybrid: bool = False, behaviour_dimensions: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.hybrid = hybrid
        output_dim = encoder.output_dim
        self.behaviour_dimensions = output_dim if behaviour_dimensions is None else behaviour_dimensions
        if not 1 <= self.behaviour_dimensions <= output_dim:
            raise ValueError(f"behaviour_dimensions must lie in [1, {output_dim}], got {behaviour_dimensions}")

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        reference, positive, negative = batch["reference"], batch["positive"], batch["negative"]
        needed = 2 if self.hybrid else 1
        if positive.dim() != (2 if "recording" in batch else 4) or positive.shape[0] < needed:
            raise ValueError(
                f"batch['positive'] must have shape (P >= {needed}, N, C, W), or (P, N) rows with "
                f"batch['recording'], got {tuple(positive.shape)}"
            )
        n = reference.shape[0]
        if "recording" in batch:  # whole-recording batch: one pass, pairs are rows of its embedding
            z = rearrange(self.encoder.recording_pass(batch["recording"]), "1 d t -> t d")
            z_ref, z_pos, z_neg = z[reference], z[positive[:needed].reshape(-1)], z[negative]
        else:
            windows = torch.cat([reference, rearrange(positive[:needed], "p n c w -> (p n) c w"), negative])
            z = self.encoder(windows)
            z_ref, z_pos, z_neg = z[:n], z[n : n + needed * n], z[n + needed * n :]
        if not self.hybrid:
            return self.loss(z_ref, z_pos, z_neg)
        k = self.behaviour_dimensions
        time = self.loss(z_ref, z_pos[:n], z_neg)
        behaviour = self.loss(z_ref[:, :k], z_pos[n:, :k], z_neg[:, :k])
        parts = {f"behaviour_{name}": value for name, value in behaviour.parts.items()}
        parts.update({f"time_{name}": value for name, value in time.parts.items()})
        return LossOutput(behaviour.loss + time.loss, parts)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a whole recording ``(T, C) -> (T, D)``, or windows ``(N, C, W) -> (N, D)``."""
        return self.encoder.embed_sequence(x) if x.dim() == 2 else self.encoder(x)


class MultiSessionCEBRA(Method):
    """One encoder per session into one shared embedding space (CEBRA's multi-session training).

    Batch (from :class:`contrastive_seq.views.windows.MultiSessionWindowViews`),
    for S sessions with B references each::

        {"reference": [(B, C_s, W)], "positive": [(P, B, C_σ(s), W)],
         "negative": [(K, C_s, W)], "positive_session": (S,)}

    Block ``s``: references and negatives embedded by encoder ``s``, positives
    (found in session ``σ(s)`` through the shared behaviour) by encoder
    ``σ(s)``. The loss is the mean over blocks of InfoNCE against the block's
    negatives, so each encoder must place matching behaviour at matching
    points of the shared space.

    Args:
        encoders: one per session, all with the same ``output_dim`` and margins.
        loss: the InfoNCE to use (``decoupled=True`` is CEBRA's form).
    """

    def __init__(self, encoders: list[nn.Module], loss: InfoNCE):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"encoders must hold one encoder per session, at least 2, got {len(encoders)}")
        dims = {encoder.output_dim for encoder in encoders}
        if len(dims) != 1:
            raise ValueError(f"encoders must share one output_dim, got {sorted(dims)}")
        self.encoders = nn.ModuleList(encoders)
        self.loss = loss

    def training_step(self, batch: dict[str, object]) -> LossOutput:  # noqa: D102
        sessions = len(self.encoders)
        if len(batch["reference"]) != sessions:
            raise ValueError(f"batch['reference'] must hold {sessions} session blocks, got {len(batch['reference'])}")
        outputs = []
        for s, encoder in enumerate(self.encoders):
            positive_encoder = self.encoders[int(batch["positive_session"][s])]
            outputs.append(
                self.loss(
                    encoder(batch["reference"][s]),
                    positive_encoder(batch["positive"][s][0]),
                    encoder(batch["negative"][s]),
                )
            )
        loss = torch.stack([out.loss for out in outputs]).mean()
        parts = {name: torch.stack([out.parts[name] for out in outputs]).mean() for name in outputs[0].parts}
        return LossOutput(loss, parts)

    def embed(self, x: torch.Tensor, session: int = 0) -> torch.Tensor:
        """Embed session ``session``'s recording ``(T, C_s) -> (T, D)``."""
        if not 0 <= session < len(self.encoders):
            raise ValueError(f"session must lie in [0, {len(self.encoders)}), got {session}")
        return self.encoders[session].embed_sequence(x)


class WholeRecordingViews(Views):
    """The whole recording once, the pairs as rows of its embedding: CEBRA's full batch, or any cheaper batch.

    When a batch covers every valid time point, one valid pass over the
    recording embeds each time point once, where window batches would embed
    it about three times per window it falls in (reference, positive,
    negative): the same outputs at a fraction of the multiply-adds and memory.
    The estimator uses it for ``batch_size=None``, and for a batch size where
    the pass costs fewer multiply-adds than the batch's windows
    (:meth:`~contrastive_seq.models.timeseries.TimeSeriesEncoder.multiply_adds`).

    ``views(recording, pairs, generator)`` returns::

        {"recording": (1, C, T),
         "reference": (N,), "positive": (P, N), "negative": (M,)}   # time - left_context

    Args:
        left_context: the encoder's left margin (row ``r`` of the valid pass is time ``r + left_context``).
    """

    def __init__(self, left_context: int):
        self.left_context = left_context
        # the last recording and its (1, C, T) contiguous copy: a convolution would copy the transposed view
        # at every forward and backward pass
        self._layout: tuple[Recording, torch.Tensor] | None = None

    def _channels_first(self, dataset: Recording) -> torch.Tensor:
        """``dataset``'s neural data as a contiguous ``(1, C, T)`` tensor, copied once per recording."""
        if self._layout is None or self._layout[0] is not dataset:
            self._layout = (dataset, rearrange(dataset.read_neural(), "t c -> 1 c t").contiguous())
        return self._layout[1]

    def __call__(  # noqa: D102
        self, dataset: Recording, pairs: PairIndex, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not isinstance(dataset, Recording):
            raise TypeError(f"dataset must be a Recording, got {type(dataset).__name__}")
        if pairs.negative is None or pairs.negative.dim() != 1:
            raise ValueError("pairs.negative must be shared negatives of shape (M,)")
        return {
            "recording": self._channels_first(dataset),
            "reference": pairs.reference - self.left_context,
            "positive": pairs.positive.T - self.left_context,
            "negative": pairs.negative - self.left_context,
        }


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
    Several sessions pair across sessions through the labels they share:
    continuous labels (the nearest target), discrete labels (the same
    label), or none (time pairs within each session). ``left_context`` /
    ``right_context`` are the encoder's margins.
    """
    margins = {"left_context": left_context, "right_context": right_context, "num_negatives": num_negatives}
    targets = {"mode": conditional, "delta": delta, "time_delta": time_offsets}
    if len(sessions) > 1:
        kinds = {label_kind(recording) for recording in sessions}
        if len(kinds) != 1:
            raise ValueError(f"y must give every session labels of one kind, got {sorted(kinds)}")
        if hybrid:
            raise ValueError("hybrid=True is not available for several sessions")
        kind = kinds.pop()
        if kind == "continuous":
            return MultiSessionSampler([recording.continuous for recording in sessions], **targets, **margins)
        if kind == "discrete":
            return MultiSessionDiscreteSampler([recording.discrete for recording in sessions], **margins)
        if kind == "none":
            return MultiSessionTimeSampler([len(recording) for recording in sessions], time_offsets, **margins)
        raise ValueError("several sessions take continuous or discrete labels y, not both (mixed)")
    recording = sessions[0]
    margins["segments"] = recording.segments  # no window and no positive crosses a trial boundary
    kind = label_kind(recording)
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


def label_kind(recording: Recording) -> str:
    """``"none"``, ``"continuous"``, ``"discrete"`` or ``"mixed"``: the labels ``recording`` carries."""
    has_continuous, has_discrete = recording.continuous is not None, recording.discrete is not None
    return {(False, False): "none", (True, False): "continuous", (False, True): "discrete"}.get(
        (has_continuous, has_discrete), "mixed"
    )

