"""Behaviour-contrastive samplers (CEBRA-Behaviour): positives chosen by the auxiliary variables.

Continuous variables (CEBRA's two conditionals). For a reference at time
``t`` with label ``y_t`` (``k`` continuous variables), a *target* label is
drawn:

- ``mode="delta"``: ``target = y_t + ε``, ``ε ~ N(0, δ² I_k)``;
- ``mode="time_delta"``: ``target = y_t + (y_{s+Δ} - y_s)``, the label change
  over Δ time steps at a time ``s`` drawn uniformly (``s`` and ``s + Δ`` in one
  recording) — an empirical distribution of how behaviour moves in Δ steps;

and the positive is the valid time point whose label is nearest (Euclidean)
to the target. The search runs on a KD-tree (:class:`scipy.spatial.KDTree`)
built once over the labels of the valid time points (setup O(T log T), one
query O(log T) in the few dimensions behaviour has), never a batch x T
distance matrix. As in CEBRA, whose search runs over all samples, the
reference itself is **not** excluded: it is the positive whenever no other
sample lies closer to the target (rare with densely sampled behaviour;
frequent in ``time_delta`` mode while the animal stands still, where the
label change is zero). Ties (samples with equal labels) are settled by a
fixed shift far below the labels' resolution (:func:`tie_broken`):
deterministic like CEBRA's argmin, not a uniform pick among the tie.

Discrete labels: the positive is a uniformly random *other* valid time point
with the reference's label (:class:`DiscreteBehaviourSampler`). Both:
the positive has the reference's discrete label and, among those, the
continuous label nearest the target (:class:`MixedBehaviourSampler`, one
KD-tree per class).

References are uniform over the valid time points, and negatives (a shared
``(M,)`` set, see :mod:`contrastive_seq.sampling.time`) uniform over them
too, so negatives follow the empirical label distribution (CEBRA's
"empirical" prior).

With segment ids (``segments``, trials or sessions glued in time), valid
time points are those whose window lies in one segment (see
:mod:`contrastive_seq.sampling.time`), so every positive and negative has
its window inside a segment, and ``time_delta`` label changes
``y_{s+Δ} - y_s`` are measured inside one segment. A behaviour positive may
lie in another segment than its reference: pairing across trials by
behaviour is the point; only pairs *by time* stay within a segment
(the time column of :class:`HybridSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import KDTree

from contrastive_seq.data.recording import ArrayLike, as_continuous, as_discrete, segment_of
from contrastive_seq.sampling.same_class import SameClassSampler
from contrastive_seq.sampling.time import RecordingSampler, TimeContrastiveSampler, ValidTimes, check_int

MODES = ("delta", "time_delta")


class BehaviourTargets:
    """Target labels for positives: CEBRA's ``delta`` and ``time_delta`` conditionals (see the module docstring).

    Args:
        continuous: ``(T, k)`` float32 labels; for several sessions, their
            concatenation along time.
        mode: ``"delta"`` or ``"time_delta"``.
        delta: δ, the standard deviation of the Gaussian step in ``delta`` mode.
        time_delta: Δ, the lag of the label changes in ``time_delta`` mode.
        session_lengths: lengths of the sessions in ``continuous`` (default:
            one session); a label change never spans two sessions.

    ``time_delta`` mode draws ``s`` uniformly over all ``(session, s)`` with
    ``s + Δ`` inside the session (O(log S) per draw); it needs one session longer than Δ.
    """

    def __init__(
        self,
        continuous: torch.Tensor,
        mode: str = "time_delta",
        delta: float = 0.1,
        time_delta: int = 1,
        session_lengths: Sequence[int] | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (0 < delta < math.inf):
            raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
        check_int("time_delta", time_delta, 1)
        lengths = torch.tensor([continuous.shape[0]] if session_lengths is None else list(session_lengths))
        changes = (lengths - time_delta).clamp(min=0)
        if mode == "time_delta" and int(changes.sum()) == 0:
            raise ValueError(
                f"time_delta={time_delta} must be shorter than a recording to measure label changes; "
                f"the recordings have {lengths.tolist()} time points"
            )
        self.continuous = continuous
        self.mode = mode
        self.delta = float(delta)
        self.time_delta = time_delta
        self._session_start = torch.cumsum(lengths, 0) - lengths
        self._change_end = torch.cumsum(changes, 0)
        self._change_start = self._change_end - changes

    def draw(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Targets ``(N, k)`` float32 for the references' labels ``continuous[reference (N,)]``."""
        label = self.continuous[reference]
        if self.mode == "delta":
            return label + self.delta * torch.randn(label.shape, generator=generator)
        draw = torch.randint(int(self._change_end[-1]), reference.shape, generator=generator)
        session = segment_of(self._change_end, draw)
        start = self._session_start[session] + draw - self._change_start[session]
        return label + self.continuous[start + self.time_delta] - self.continuous[start]


TIE_BREAK = 1e-9  # tie-breaking shift of the tree's points, relative to each variable's range
_GOLDEN = (5**0.5 - 1) / 2


def tie_broken(points: np.ndarray) -> np.ndarray:
    """``points (n, k)`` float64, each entry shifted by less than ``TIE_BREAK / 2`` of its column's range.

    The shifts follow a fixed low-discrepancy sequence (``frac(i * golden ratio) - 1/2`` over the
    entries), so every shifted value is distinct and the result is deterministic. Repeated values
    (a still animal, a run-direction column with two values) otherwise make scipy's KD-tree degrade
    to a linear scan per query: chains of one-point splits, or bounds that ignore the gap between a
    target and a column's few values. The shift is far below float32 resolution of typical labels,
    so the nearest point found differs from the exact one only between near-ties of about
    ``TIE_BREAK`` of the range.
    """
    extent = points.max(0) - points.min(0)
    scale = np.where(extent > 0, extent, np.maximum(np.abs(points).max(0), 1.0)) * TIE_BREAK
    entry = np.arange(points.size, dtype=np.float64).reshape(points.shape)
    return points + (np.modf(entry * _GOLDEN)[0] - 0.5) * scale


class NearestTimeIndex:
    """The time point, among a fixed set, whose label is nearest a target: one KD-tree, built once.

    Args:
        continuous: ``(T, k)`` labels.
        times: the candidate time points, a ``range``, a :class:`ValidTimes` or an int64 tensor ``(n,)`` (n >= 1).

    Setup O(n log n) (``scipy.spatial.KDTree``, sliding-midpoint splits, over the
    :func:`tie_broken` float64 labels); a query O(log n).
    """

    def __init__(self, continuous: torch.Tensor, times: range | ValidTimes | torch.Tensor):
        if isinstance(times, ValidTimes):
            times = range(times.start, times.stop) if times.num_runs == 1 else times.as_tensor()
        if isinstance(times, range):
            points = continuous[times.start : times.stop]
        else:
            points = continuous[times]
        if points.shape[0] < 1:
            raise ValueError("times must hold at least one time point")
        self.times = times
        self._tree = KDTree(tie_broken(points.double().numpy()), balanced_tree=False, compact_nodes=False)

    def nearest(self, targets: torch.Tensor) -> torch.Tensor:
        """Time points ``(m,)`` int64 whose labels are nearest ``targets (m, k)``."""
        _, position = self._tree.query(targets.double().numpy(), k=1)
        position = torch.from_numpy(np.asarray(position, dtype=np.int64))
        if isinstance(self.times, range):
            return position + self.times.start
        return self.times[position]


class ContinuousBehaviourSampler(RecordingSampler):
    """Positive = the valid time point whose continuous label is nearest a target drawn around the reference's.

    See the module docstring for the ``delta`` and ``time_delta`` targets and
    why the reference itself may be its own positive (as in CEBRA).
    Setup O(T log T); a draw O(batch log T).

    Args:
        continuous: ``(T, k)`` (or ``(T,)``) continuous auxiliary variables,
            finite; scale them comparably, the search is Euclidean.
        mode: ``"time_delta"`` (default) or ``"delta"``.
        delta: δ for ``delta`` mode (in label units).
        time_delta: Δ for ``time_delta`` mode (CEBRA uses its ``time_offsets`` here).
        left_context, right_context, num_negatives, segments: see :class:`RecordingSampler`.

    A draw: ``PairIndex(reference (N,), positive (N, 1), negative (M,))``.
    """

    def __init__(
        self,
        continuous: ArrayLike,
        mode: str = "time_delta",
        delta: float = 0.1,
        time_delta: int = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
        segments: ArrayLike | None = None,
    ):
        continuous = as_continuous("continuous", continuous)
        super().__init__(continuous.shape[0], left_context, right_context, num_negatives, segments)
        self.continuous = continuous
        self.targets = BehaviourTargets(continuous, mode, delta, time_delta, self.segment_lengths)
        self._index = NearestTimeIndex(continuous, self.valid)

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 1)``: the valid time point nearest each reference's target label."""
        return self._index.nearest(self.targets.draw(reference, generator)).unsqueeze(1)


class DiscreteBehaviourSampler(RecordingSampler):
    """Positive = a uniformly random other valid time point with the reference's discrete label.

    References are uniform over the valid time points (so classes appear in
    proportion to their duration) and so are the negatives. The batch carries
    the references' labels (``PairIndex.labels``), which a loss may use as a
    multi-positive mask. Built on :class:`SameClassSampler` over the valid
    time points: setup O(T log T), a draw O(batch).

    Args:
        discrete: ``(T,)`` integer labels.
        left_context, right_context, num_negatives, segments: see :class:`RecordingSampler`.
        allow_singletons: accept a label held by a single valid time point
            (its positive is itself); refused by default.
    """

    def __init__(
        self,
        discrete: ArrayLike,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
        allow_singletons: bool = False,
        segments: ArrayLike | None = None,
    ):
        discrete = as_discrete("discrete", discrete)
        super().__init__(discrete.shape[0], left_context, right_context, num_negatives, segments)
        self.discrete = discrete
        try:
            valid_labels = discrete[self.valid.as_tensor()]
            self._same_class = SameClassSampler(valid_labels, allow_singletons=allow_singletons)
        except ValueError as error:
            raise ValueError(
                f"discrete, at the valid time points {self.valid.start}..{self.valid.stop - 1}: {error}"
            ) from None

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 1)``: a uniformly random other valid time point of each reference's label."""
        return self.valid.at(self._same_class.positives_for(self.valid.rank(reference), generator))

    def labels_of(self, reference: torch.Tensor) -> torch.Tensor:
        """The references' discrete labels."""
        return self.discrete[reference]


class MixedBehaviourSampler(RecordingSampler):
    """Positive = same discrete label, and among those the continuous label nearest the target.

    The target is drawn as in :class:`ContinuousBehaviourSampler`
    (``time_delta``, CEBRA's mixed conditional, or ``delta``); the search
    runs on a KD-tree per label over that label's valid time points. The
    reference is not excluded (it may be the nearest). Setup O(T log T); a
    draw O(batch log T + number of labels). The batch carries the references'
    discrete labels.

    Args:
        discrete: ``(T,)`` integer labels.
        continuous: ``(T, k)`` (or ``(T,)``) continuous variables.
        mode, delta, time_delta: the target, see :class:`BehaviourTargets`.
        left_context, right_context, num_negatives, segments: see :class:`RecordingSampler`.
    """

    def __init__(
        self,
        discrete: ArrayLike,
        continuous: ArrayLike,
        mode: str = "time_delta",
        delta: float = 0.1,
        time_delta: int = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
        segments: ArrayLike | None = None,
    ):
        discrete = as_discrete("discrete", discrete)
        continuous = as_continuous("continuous", continuous, discrete.shape[0])
        super().__init__(discrete.shape[0], left_context, right_context, num_negatives, segments)
        self.discrete = discrete
        self.continuous = continuous
        self.targets = BehaviourTargets(continuous, mode, delta, time_delta, self.segment_lengths)
        classes, self._class_of = torch.unique(discrete, return_inverse=True)
        valid_times = self.valid.as_tensor()
        valid_class = self._class_of[valid_times]
        order = torch.argsort(valid_class, stable=True)
        counts = torch.bincount(valid_class, minlength=classes.numel()).tolist()
        self._indexes = {
            label: NearestTimeIndex(continuous, times)
            for label, times in enumerate(valid_times[order].split(counts))
            if times.numel()
        }

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 1)``: the valid time point of each reference's label whose continuous label is nearest the target."""
        targets = self.targets.draw(reference, generator)
        label = self._class_of[reference]
        positive = torch.empty_like(reference)
        for value in label.unique().tolist():
            rows = label == value
            positive[rows] = self._indexes[value].nearest(targets[rows])
        return positive.unsqueeze(1)

    def labels_of(self, reference: torch.Tensor) -> torch.Tensor:
        """The references' discrete labels."""
        return self.discrete[reference]


class HybridSampler(RecordingSampler):
    """Time and behaviour positives together (CEBRA-Hybrid): ``positive`` has two columns.

    ``positive[:, 0]`` is the time positive ``reference + Δ``
    (:class:`TimeContrastiveSampler`), ``positive[:, 1]`` the behaviour
    positive of ``behaviour``'s kind, for the same reference; a method
    computes a time loss on column 0 and a behaviour loss on column 1.
    References are uniform over the valid time points that leave room for Δ;
    negatives are shared, uniform over the valid time points.

    Args:
        behaviour: a :class:`ContinuousBehaviourSampler`,
            :class:`DiscreteBehaviourSampler` or :class:`MixedBehaviourSampler`;
            its recording length, context margins, ``num_negatives`` and
            ``segments`` are used (the time positive stays in the reference's segment).
        time_offset: Δ of the time positives (int or ``(low, high)``).

    A draw: ``PairIndex(reference (N,), positive (N, 2), negative (M,), labels)``.
    """

    def __init__(
        self,
        behaviour: ContinuousBehaviourSampler | DiscreteBehaviourSampler | MixedBehaviourSampler,
        time_offset: int | tuple[int, int] = 1,
    ):
        behaviour_kinds = (ContinuousBehaviourSampler, DiscreteBehaviourSampler, MixedBehaviourSampler)
        if not isinstance(behaviour, behaviour_kinds):
            raise TypeError(
                "behaviour must be a ContinuousBehaviourSampler, DiscreteBehaviourSampler or MixedBehaviourSampler, "
                f"got {type(behaviour).__name__}"
            )
        margins = (behaviour.left_context, behaviour.right_context, behaviour.num_negatives)
        super().__init__(behaviour.num_items, *margins, segments=behaviour.segments)
        self.behaviour = behaviour
        self.time = TimeContrastiveSampler(behaviour.num_items, time_offset, *margins, segments=behaviour.segments)
        self.reference_times = self.time.reference_times

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 2)``: column 0 the time positive, column 1 the behaviour positive."""
        time = self.time.positives_for(reference, generator)
        return torch.cat([time, self.behaviour.positives_for(reference, generator)], dim=1)

    def labels_of(self, reference: torch.Tensor) -> torch.Tensor | None:
        """The behaviour sampler's labels (discrete labels, if it has them)."""
        return self.behaviour.labels_of(reference)
