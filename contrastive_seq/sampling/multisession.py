"""Multi-session sampling: positives in another session, matched through the shared behaviour.

Sessions (animals, days) have their own neurons but auxiliary variables of
one meaning. A batch takes its references from every session and finds each
reference's positive in *another* session, so that one encoder per session
learns embeddings that agree across sessions:

- :class:`MultiSessionSampler` (continuous labels): the time point whose
  label is nearest the reference's target label (drawn as in
  :class:`~contrastive_seq.sampling.behaviour.BehaviourTargets`);
- :class:`MultiSessionDiscreteSampler` (discrete labels): a uniformly random
  time point with the reference's label;
- :class:`MultiSessionTimeSampler` (no labels): nothing is shared between
  sessions, so the positive stays in the reference's own session at
  ``t + time_offset`` (``σ`` is the identity); the sessions are trained
  jointly into one space of one dimension, but without a shared variable
  nothing aligns them with each other.

Indices are *global*: session ``s`` holds ``offsets[s] .. offsets[s + 1] - 1``
(as :class:`~contrastive_seq.data.recording.MultiSessionRecording`). A draw of
``batch_size = S * B`` pairs has this block layout, with S sessions and
``B = batch_size / S``:

- rows ``s*B .. (s+1)*B - 1`` (block ``s``): ``reference`` uniform over the
  valid time points of session ``s``;
- ``positive[s*B:(s+1)*B, 0]``: all in session ``σ(s)``, where ``σ`` is a
  uniformly random derangement of the sessions drawn per batch (``σ(s) != s``;
  with two sessions the blocks swap), or the identity for the time sampler;
- ``negative`` ``(S * K,)``: block ``s`` (entries ``s*K .. (s+1)*K - 1``)
  holds ``K`` negatives uniform over the valid time points of session ``s``.

A method with one encoder per session embeds reference block ``s`` and
negative block ``s`` with encoder ``s``, and positive block ``s`` with
encoder ``σ(s)``. :class:`~contrastive_seq.views.windows.MultiSessionWindowViews`
returns the windows already split this way. The layout assumes the whole
batch: :meth:`PairIndex.shard` for several ranks splits it row-wise.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from contrastive_seq.data.recording import ArrayLike, as_continuous, as_discrete
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.sampling.behaviour import BehaviourTargets, NearestTimeIndex
from contrastive_seq.sampling.time import check_context, check_int, check_negatives_fit, uniform_times, valid_range


def random_derangement(num: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(num)`` with no fixed point (``num >= 2``).

    Rejection from uniform permutations: about e tries on average, each O(num).
    """
    if num < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {num}")
    while True:
        permutation = torch.randperm(num, generator=generator)
        if not bool((permutation == torch.arange(num)).any()):
            return permutation


class _SessionBlocks(Sampler):
    """The block layout shared by the multi-session samplers; subclasses say where positives lie.

    Args:
        lengths: time points of each session (at least two sessions).
        left_context, right_context: the encoders' margins (shared by the sessions).
        num_negatives: K, negatives per session; ``None``: B = batch_size / S.
        name: how errors call the per-session inputs (``"continuous"``: ``continuous[s]``).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        left_context: int,
        right_context: int,
        num_negatives: int | None,
        name: str,
    ):
        self.left_context, self.right_context = check_context(left_context, right_context)
        self.num_negatives = None if num_negatives is None else check_int("num_negatives", num_negatives, 1)
        self.valid = [
            valid_range(length, self.left_context, self.right_context, f"{name}[{s}]")
            for s, length in enumerate(lengths)
        ]
        if self.valid:
            shortest = min(len(valid) for valid in self.valid)
            check_negatives_fit(self.num_negatives, shortest, "valid time points of the shortest session")
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.tensor(list(lengths)), 0)])
        self.num_items = int(self.offsets[-1])
        self.num_sessions = len(lengths)

    def reference_times(self, session: int) -> range:
        """Local time points references of ``session`` are drawn from (default: its valid ones)."""
        return self.valid[session]

    def target_sessions(self, generator: torch.Generator) -> torch.Tensor:
        """``(S,)`` σ: the session of each block's positives (default: a random derangement)."""
        return random_derangement(self.num_sessions, generator)

    @abc.abstractmethod
    def positives_in(
        self, session: int, target: int, reference: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``(B,)`` local positives in session ``target`` for the local references ``(B,)`` of ``session``."""

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        sessions = self.num_sessions
        if batch_size % sessions:
            raise ValueError(f"batch_size={batch_size} must be a multiple of the number of sessions ({sessions})")
        block = batch_size // sessions
        negatives = self.num_negatives or block
        local = [uniform_times(self.reference_times(s), block, generator) for s in range(sessions)]
        reference = torch.cat([self.offsets[s] + times for s, times in enumerate(local)])
        target_session = self.target_sessions(generator)
        positive = torch.cat(
            [
                self.offsets[j] + self.positives_in(s, j, local[s], generator)
                for s, j in enumerate(target_session.tolist())
            ]
        )
        negative = torch.cat(
            [self.offsets[s] + uniform_times(self.valid[s], negatives, generator) for s in range(sessions)]
        )
        return PairIndex(reference, positive.unsqueeze(1), negative)


class MultiSessionSampler(_SessionBlocks):
    """References from every session; each positive in another session, nearest the reference's target label.

    See the module docstring for the block layout of a draw. Setup
    O(T log T) (a KD-tree per session over its valid time points); a draw
    O(batch log T). ``batch_size`` must be a multiple of the number of sessions.

    Args:
        continuous: one ``(T_s, k)`` (or ``(T_s,)``) array of continuous
            variables per session, at least two sessions, one k.
        mode, delta, time_delta: the target label, see
            :class:`~contrastive_seq.sampling.behaviour.BehaviourTargets`;
            ``time_delta`` label changes are pooled over all sessions.
        left_context, right_context: the encoders' margins (shared by the sessions).
        num_negatives: K, negatives per session; ``None``: B = batch_size / S.

    Attributes:
        offsets: ``(S + 1,)`` int64 global start of each session (and the total).
        valid: per session, the ``range`` of valid local time points.
    """

    def __init__(
        self,
        continuous: Sequence[ArrayLike],
        mode: str = "time_delta",
        delta: float = 0.1,
        time_delta: int = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
    ):
        if isinstance(continuous, torch.Tensor) or not isinstance(continuous, Sequence) or len(continuous) < 2:
            raise ValueError("continuous must be a sequence of at least two per-session label arrays")
        sessions = [as_continuous(f"continuous[{s}]", labels) for s, labels in enumerate(continuous)]
        widths = [labels.shape[1] for labels in sessions]
        if len(set(widths)) != 1:
            raise ValueError(f"continuous must have the same k in every session (shared behaviour), got k = {widths}")
        lengths = [labels.shape[0] for labels in sessions]
        super().__init__(lengths, left_context, right_context, num_negatives, "continuous")
        self.targets = BehaviourTargets(torch.cat(sessions), mode, delta, time_delta, session_lengths=lengths)
        self._indexes = [NearestTimeIndex(labels, valid) for labels, valid in zip(sessions, self.valid)]

    def positives_in(  # noqa: D102
        self, session: int, target: int, reference: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        labels = self.targets.draw(self.offsets[session] + reference, generator)
        return self._indexes[target].nearest(labels)


class MultiSessionDiscreteSampler(_SessionBlocks):
    """References from every session; each positive in another session, uniform among its label's time points.

    Every label of a session must occur at a valid time point of every other
    session (a positive must exist wherever the block is sent). Setup
    O(T log T) (one sort per session); a draw O(batch log T).

    Args:
        discrete: one ``(T_s,)`` integer label array per session, at least two sessions.
        left_context, right_context: the encoders' margins (shared by the sessions).
        num_negatives: K, negatives per session; ``None``: B = batch_size / S.
    """

    def __init__(
        self,
        discrete: Sequence[ArrayLike],
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
    ):
        if isinstance(discrete, torch.Tensor) or not isinstance(discrete, Sequence) or len(discrete) < 2:
            raise ValueError("discrete must be a sequence of at least two per-session label arrays")
        sessions = [as_discrete(f"discrete[{s}]", labels) for s, labels in enumerate(discrete)]
        super().__init__([len(labels) for labels in sessions], left_context, right_context, num_negatives, "discrete")
        self.labels = sessions
        self._sorted_labels, self._times_by_label = [], []
        for labels, valid in zip(sessions, self.valid):
            valid_labels = labels[valid.start : valid.stop]
            order = torch.argsort(valid_labels, stable=True)
            self._sorted_labels.append(valid_labels[order])
            self._times_by_label.append(valid.start + order)
        present = [set(sorted_labels.unique().tolist()) for sorted_labels in self._sorted_labels]
        for s, labels in enumerate(present):
            for j, other in enumerate(present):
                missing = sorted(labels - other)
                if missing:
                    raise ValueError(
                        f"discrete[{s}] holds labels {missing[:5]} that discrete[{j}] lacks at its valid time "
                        "points: every session needs every label to pair across sessions"
                    )

    def positives_in(  # noqa: D102
        self, session: int, target: int, reference: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        sorted_labels = self._sorted_labels[target]
        wanted = self.labels[session][reference]
        start = torch.searchsorted(sorted_labels, wanted, side="left")
        count = torch.searchsorted(sorted_labels, wanted, side="right") - start
        pick = start + (torch.rand(wanted.shape, generator=generator) * count).long().clamp(max=count - 1)
        return self._times_by_label[target][pick]


class MultiSessionTimeSampler(_SessionBlocks):
    """No labels: each positive in the reference's own session at ``t + time_offset`` (σ is the identity).

    References of session ``s`` are uniform over its valid time points that
    leave room for the offset. Setup O(S); a draw O(batch).

    Args:
        lengths: time points of each session, at least two sessions.
        time_offset: Δ >= 1.
        left_context, right_context: the encoders' margins (shared by the sessions).
        num_negatives: K, negatives per session; ``None``: B = batch_size / S.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        time_offset: int = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
    ):
        if not isinstance(lengths, Sequence) or len(lengths) < 2:
            raise ValueError("lengths must be a sequence of at least two session lengths")
        super().__init__(
            [check_int(f"lengths[{s}]", length, 1) for s, length in enumerate(lengths)],
            left_context,
            right_context,
            num_negatives,
            "lengths",
        )
        self.time_offset = check_int("time_offset", time_offset, 1)
        for s, valid in enumerate(self.valid):
            if len(valid) <= self.time_offset:
                raise ValueError(
                    f"lengths[{s}]={lengths[s]} leaves no reference: its {len(valid)} valid time points must "
                    f"exceed time_offset={self.time_offset}"
                )

    def reference_times(self, session: int) -> range:  # noqa: D102
        valid = self.valid[session]
        return range(valid.start, valid.stop - self.time_offset)

    def target_sessions(self, generator: torch.Generator) -> torch.Tensor:  # noqa: D102
        return torch.arange(self.num_sessions)

    def positives_in(  # noqa: D102
        self, session: int, target: int, reference: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return reference + self.time_offset
