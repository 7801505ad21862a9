"""Samplers over the time points of one recording, and time-contrastive pairs (CEBRA-Time).

An encoder with a receptive field embeds time ``t`` from the window
``t - left_context .. t + right_context``, so only the time points
``left_context .. T - right_context - 1`` (the *valid* ones) have a window
inside the recording. Every sampler here takes the encoder's
``left_context`` / ``right_context`` and returns only valid indices, for
references, positives and negatives alike.

Negatives are a set of ``M`` valid time points drawn uniformly, shared by the
whole batch: ``PairIndex.negative`` has shape ``(M,)`` (CEBRA scores every
reference against every negative of its batch, an N x M similarity matrix).
"""

from __future__ import annotations

import abc

import torch

from contrastive_seq.sampling.base import PairIndex, Sampler


def check_int(name: str, value: object, minimum: int) -> int:
    """Require an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


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


class RecordingSampler(Sampler):
    """Base of the single-recording samplers: uniform valid references, their positives, uniform negatives.

    A draw returns ``PairIndex(reference (N,), positive (N, P), negative (M,), labels)``
    with references uniform over :attr:`reference_times`, their positives
    from :meth:`positives_for`, ``M = num_negatives`` (default: the batch
    size) negatives uniform over :attr:`valid`, and labels from
    :meth:`labels_of`. Subclasses set :attr:`reference_times` (a sub-range of
    :attr:`valid` when their positives need room, as the time offset does)
    and implement :meth:`positives_for`.

    Args:
        num_timepoints: T, the recording's length.
        left_context, right_context: the encoder's margins (default 0).
        num_negatives: M, shared negatives per batch; ``None`` draws as many as the batch size.

    Attributes:
        valid: ``range`` of valid time points.
        reference_times: ``range`` the references are drawn from.
    """

    def __init__(
        self, num_timepoints: int, left_context: int = 0, right_context: int = 0, num_negatives: int | None = None
    ):
        check_int("num_timepoints", num_timepoints, 1)
        self.left_context, self.right_context = check_context(left_context, right_context)
        self.num_negatives = None if num_negatives is None else check_int("num_negatives", num_negatives, 1)
        self.num_items = num_timepoints
        self.valid = valid_range(num_timepoints, self.left_context, self.right_context)
        self.reference_times = self.valid

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        reference = uniform_times(self.reference_times, batch_size, generator)
        positive = self.positives_for(reference, generator)
        negative = self.negatives(batch_size, generator)
        return PairIndex(reference, positive, negative, self.labels_of(reference))

    def negatives(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """``(M,)`` shared negatives, uniform over the valid time points."""
        return uniform_times(self.valid, self.num_negatives or batch_size, generator)

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
    uniform over ``left_context .. T - right_context - 1 - max Δ`` so that
    every positive is valid. Setup O(1), a draw O(batch).

    Args:
        num_timepoints: T.
        time_offset: Δ, an int >= 1 or a ``(low, high)`` pair with ``1 <= low <= high``.
        left_context, right_context, num_negatives: see :class:`RecordingSampler`.
    """

    def __init__(
        self,
        num_timepoints: int,
        time_offset: int | tuple[int, int] = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
    ):
        super().__init__(num_timepoints, left_context, right_context, num_negatives)
        if isinstance(time_offset, (tuple, list)):
            if len(time_offset) != 2:
                raise ValueError(f"time_offset must be an int or a (low, high) pair, got {time_offset!r}")
            low, high = time_offset
        else:
            low = high = time_offset
        check_int("time_offset", low, 1)
        check_int("time_offset", high, low)
        self.time_offset = (low, high)
        self.reference_times = range(self.valid.start, self.valid.stop - high)
        if len(self.reference_times) < 1:
            raise ValueError(
                f"time_offset={time_offset!r} leaves no reference: the {len(self.valid)} valid time points "
                f"(T={num_timepoints}, left_context={left_context}, right_context={right_context}) "
                f"must exceed the largest offset {high}"
            )

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, 1)``: ``reference + Δ`` with Δ fixed or uniform in the offset range."""
        low, high = self.time_offset
        if low == high:
            return (reference + low).unsqueeze(1)
        return (reference + torch.randint(low, high + 1, reference.shape, generator=generator)).unsqueeze(1)
