"""Samplers over the time points of one recording, and time-contrastive pairs (CEBRA-Time).

An encoder with a receptive field embeds time ``t`` from the window
``t - left_context .. t + right_context``, so only the time points
``left_context .. T - right_context - 1`` (the *valid* ones) have a window
inside the recording. Every sampler here takes the encoder's
``left_context`` / ``right_context`` and returns only valid indices, for
references, positives and negatives alike.

With segment ids (``segments (T,)``: trials, or sessions glued in time; see
:func:`~contrastive_seq.data.recording.segment_runs`), a time point is valid
only when its window lies inside its own segment, and a time positive
``t + Δ`` lies in the segment of ``t``. The valid time points are then a set
of runs (:class:`ValidTimes`); a uniform draw over them costs O(log R) for R
segments. A segment shorter than the window holds no valid time point.

Negatives are a set of ``M`` valid time points drawn uniformly, shared by the
whole batch: ``PairIndex.negative`` has shape ``(M,)`` (CEBRA scores every
reference against every negative of its batch, an N x M similarity matrix).
"""

from __future__ import annotations

import abc

import torch

from contrastive_seq.data.recording import ArrayLike, as_discrete, segment_of, segment_runs
from contrastive_seq.sampling.base import PairIndex, Sampler


def check_int(name: str, value: object, minimum: int) -> int:
    """Require an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_negatives_fit(num_negatives: int | None, available: int, what: str) -> None:
    """Refuse more negatives than the ``available`` time points they are drawn from (with replacement: beyond
    that they only repeat time points, at the cost of memory), before any batch is drawn.

    Raises:
        ValueError: naming ``num_negatives`` and ``available``.
    """
    if num_negatives is not None and num_negatives > available:
        raise ValueError(
            f"num_negatives={num_negatives:,} is more than the {available:,} {what} negatives are drawn from; "
            f"more only repeats them: use num_negatives <= {available:,}"
        )


def check_context(left_context: int, right_context: int) -> tuple[int, int]:
    """Require the receptive-field margins to be ints >= 0."""
    return check_int("left_context", left_context, 0), check_int("right_context", right_context, 0)


def valid_range(num_timepoints: int, left_context: int, right_context: int, name: str = "recording") -> range:
    """The time points whose window ``t - left_context .. t + right_context`` fits ``num_timepoints``.

    Raises a ValueError naming ``name`` when no time point is valid.
    """
    valid = range(left_context, num_timepoints - right_context)
    if len(valid) < 1:
        raise ValueError(
            f"{name} of {num_timepoints} time points is too short for the receptive field "
            f"(left_context={left_context}, right_context={right_context}): it needs at least "
            f"{left_context + right_context + 1} time points"
        )
    return valid


def uniform_times(valid: range, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(count,)`` int64 time points drawn uniformly from ``valid``."""
    return torch.randint(valid.start, valid.stop, (count,), generator=generator)


class ValidTimes:
    """A set of time points held as sorted, disjoint, non-empty runs ``starts[r] .. stops[r] - 1``.

    Args:
        starts, stops: ``(R,)`` int64 with ``starts[r] < stops[r] <= starts[r + 1]``, R >= 1.

    Attributes:
        start, stop: the first time point and one past the last.
    """

    def __init__(self, starts: torch.Tensor, stops: torch.Tensor):
        self.starts, self.stops = starts.long(), stops.long()
        counts = self.stops - self.starts
        self._count_end = torch.cumsum(counts, 0)
        self._count_start = self._count_end - counts
        self.start, self.stop = int(self.starts[0]), int(self.stops[-1])

    def __len__(self) -> int:
        return int(self._count_end[-1])

    def __repr__(self) -> str:
        return f"ValidTimes({len(self)} time points in {self.starts.numel()} runs, {self.start}..{self.stop - 1})"

    @property
    def num_runs(self) -> int:
        """R, the number of runs."""
        return self.starts.numel()

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count,)`` int64 time points drawn uniformly from the set (O(log R) each)."""
        if self.num_runs == 1:
            return uniform_times(range(self.start, self.stop), count, generator)
        rank = torch.randint(len(self), (count,), generator=generator)
        return self.at(rank)

    def at(self, rank: torch.Tensor) -> torch.Tensor:
        """The time points of the given ranks (0 .. len - 1) in sorted order (any shape)."""
        run = segment_of(self._count_end, rank)
        return self.starts[run] + rank - self._count_start[run]

    def rank(self, times: torch.Tensor) -> torch.Tensor:
        """The rank in sorted order of each of ``times`` (any shape), which must belong to the set."""
        run = segment_of(self.starts, times) - 1
        return self._count_start[run] + times - self.starts[run]

    def as_tensor(self) -> torch.Tensor:
        """Every time point, sorted: ``(len,)`` int64."""
        return self.at(torch.arange(len(self)))

    def shortened(self, amount: int) -> ValidTimes | None:
        """The time points ``t`` with ``t + amount`` in the same run (``None`` when no run is long enough)."""
        stops = self.stops - amount
        keep = stops > self.starts
        if not bool(keep.any()):
            return None
        return ValidTimes(self.starts[keep], stops[keep])


def valid_times(
    num_timepoints: int,
    left_context: int,
    right_context: int,
    segments: ArrayLike | None = None,
    name: str = "recording",
) -> ValidTimes:
    """The time points whose window ``t - left_context .. t + right_context`` lies in one segment.

    Args:
        num_timepoints: T.
        left_context, right_context: the window's margins.
        segments: optional ``(T,)`` integer segment ids (``None``: one segment).
        name: how errors name the recording.

    Raises:
        ValueError naming ``name`` when no time point is valid, and naming
        ``segments`` when it does not match T.
    """
    if segments is None:
        valid = valid_range(num_timepoints, left_context, right_context, name)
        return ValidTimes(torch.tensor([valid.start]), torch.tensor([valid.stop]))
    starts, stops = segment_runs(as_discrete("segments", segments, num_timepoints))
    starts, stops = starts + left_context, stops - right_context
    keep = stops > starts
    if not bool(keep.any()):
        longest = int((stops - starts).max()) + left_context + right_context
        raise ValueError(
            f"every segment of the {name} is too short for the receptive field (left_context={left_context}, "
            f"right_context={right_context}): a segment needs at least {left_context + right_context + 1} "
            f"time points, the longest has {longest}"
        )
    return ValidTimes(starts[keep], stops[keep])


class RecordingSampler(Sampler):
    """Base of the single-recording samplers: uniform valid references, their positives, uniform negatives.

    A draw returns ``PairIndex(reference (N,), positive (N, P), negative (M,), labels)``
    with references uniform over :attr:`reference_times`, their positives
    from :meth:`positives_for`, ``M = num_negatives`` (default: the batch
    size) negatives uniform over :attr:`valid`, and labels from
    :meth:`labels_of`. Subclasses set :attr:`reference_times` (a subset of
    :attr:`valid` when their positives need room, as the time offset does)
    and implement :meth:`positives_for`.

    Args:
        num_timepoints: T, the recording's length.
        left_context, right_context: the encoder's margins (default 0).
        num_negatives: M, shared negatives per batch; ``None`` draws as many as the batch size.
        segments: optional ``(T,)`` integer segment ids (``Recording.segments``):
            windows never cross a change of id.

    Attributes:
        segment_lengths: lengths of the runs of equal segment ids, in order (``None`` without segments).
        valid: :class:`ValidTimes`, the valid time points.
        reference_times: :class:`ValidTimes` the references are drawn from.
    """

    def __init__(
        self,
        num_timepoints: int,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
        segments: ArrayLike | None = None,
    ):
        check_int("num_timepoints", num_timepoints, 1)
        self.left_context, self.right_context = check_context(left_context, right_context)
        self.num_negatives = None if num_negatives is None else check_int("num_negatives", num_negatives, 1)
        self.num_items = num_timepoints
        self.segments = None if segments is None else as_discrete("segments", segments, num_timepoints)
        self.segment_lengths = None
        if self.segments is not None:
            starts, stops = segment_runs(self.segments)
            self.segment_lengths = (stops - starts).tolist()
        self.valid = valid_times(num_timepoints, self.left_context, self.right_context, self.segments)
        self.reference_times = self.valid
        check_negatives_fit(self.num_negatives, len(self.valid), "valid time points")

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        reference = self.reference_times.draw(batch_size, generator)
        positive = self.positives_for(reference, generator)
        negative = self.negatives(batch_size, generator)
        return PairIndex(reference, positive, negative, self.labels_of(reference))

    def negatives(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """``(M,)`` shared negatives, uniform over the valid time points."""
        return self.valid.draw(self.num_negatives or batch_size, generator)

    def labels_of(self, reference: torch.Tensor) -> torch.Tensor | None:
        """``PairIndex.labels`` for these references (``None``: no multi-positive mask)."""
        return None

    @abc.abstractmethod
    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Valid positives ``(N, P)`` for references ``(N,)`` drawn from :attr:`reference_times`."""


class TimeContrastiveSampler(RecordingSampler):
    """Positive = the reference's time plus an offset Δ (CEBRA's ``time_offsets``); negatives uniform.

    Δ is fixed (``time_offset=10``) or drawn per reference uniformly from an
    inclusive range (``time_offset=(1, 10)``), always >= 1. References are
    uniform over ``left_context .. T - right_context - 1 - max Δ`` (within each
    segment, with segments) so that every positive is valid and in the
    reference's segment. Setup O(segments), a draw O(batch log segments).

    Args:
        num_timepoints: T.
        time_offset: Δ, an int >= 1 or a ``(low, high)`` pair with ``1 <= low <= high``.
        left_context, right_context, num_negatives, segments: see :class:`RecordingSampler`.
    """

    def __init__(
        self,
        num_timepoints: int,
        time_offset: int | tuple[int, int] = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
        segments: ArrayLike | None = None,
    ):
        super().__init__(num_timepoints, left_context, right_context, num_negatives, segments)
        if isinstance(time_offset, (tuple, list)):
            if len(time_offset) != 2:
                raise ValueError(f"time_offset must be an int or a (low, high) pair, got {time_offset!r}")
            low, high = time_offset
        else:
            low = high = time_offset
        check_int("time_offset", low, 1)
        check_int("time_offset", high, low)
        self.time_offset = (low, high)
        reference_times = self.valid.shortened(high)
        if reference_times is None:
            where = "valid time points" if self.segments is None else "valid time points of the longest segment"
            longest = int((self.valid.stops - self.valid.starts).max())
            raise ValueError(
                f"time_offset={time_offset!r} leaves no reference: the {longest} "
                f"{where} (T={num_timepoints}, left_context={left_context}, right_context={right_context}) "
                f"must exceed the largest offset {high}"
            )
        self.reference_times = reference_times

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 1)``: ``reference + Δ`` with Δ fixed or uniform in the offset range."""
        low, high = self.time_offset
        if low == high:
            return (reference + low).unsqueeze(1)
        return (reference + torch.randint(low, high + 1, reference.shape, generator=generator)).unsqueeze(1)
