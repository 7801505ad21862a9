"""Recordings: neural time series with the behaviour recorded alongside, one session or several.

A :class:`Recording` is one session: ``neural (time, channels)`` and, at the
same time points, optional continuous auxiliary variables ``continuous (time, k)``
(position, speed, ...) and optional discrete labels ``discrete (time,)``
(trial type, run direction, ...), and optional segment ids ``segments (time,)``
(trials, or sessions glued in time): a change of id between two time points
is a boundary that no window and no time-paired positive crosses. A
:class:`MultiSessionRecording` holds
several recordings whose auxiliary variables share their meaning (same k,
same units), e.g. several animals running on one track, each with its own
neurons. Samples of all sessions are numbered by one *global index*:
session ``s`` occupies ``offsets[s] .. offsets[s + 1] - 1``.

The neural array of a recording may stay on disk: any object following the
:class:`RowReader` protocol (``data.hdf5.HDF5TimeSeries``) is kept as it is,
and the window views read only the rows a batch needs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


@runtime_checkable
class RowReader(Protocol):
    """A ``(time, channels)`` array that is not in memory and reads selected rows on demand.

    Attributes:
        shape: ``(time, channels)``.
        dtype: the stored NumPy dtype (integers or floats).
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def read_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Rows ``rows`` (int64, sorted, unique) in one read: ``(len(rows), channels)`` float32."""


def dtype_kind(value: ArrayLike | RowReader) -> str:
    """NumPy's kind code of ``value``'s dtype: ``"f"`` float, ``"i"``/``"u"`` integer, ``"b"`` bool, ``"c"`` complex."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return "b"
        if value.is_complex():
            return "c"
        return "f" if value.is_floating_point() else "i"
    return np.dtype(value.dtype).kind


def check_neural_layout(name: str, shape: tuple[int, ...], kind: str) -> None:
    """Require ``(time, channels)`` with both sizes >= 1 and integer or floating values (spike counts or rates)."""
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must have shape (time, channels) with time, channels >= 1, got {tuple(shape)}")
    if kind not in "fiu":
        raise TypeError(f"{name} must hold integer or floating values, got dtype kind {kind!r}")


def check_continuous_layout(name: str, shape: tuple[int, ...], kind: str, length: int) -> None:
    """Require ``(length, k)`` with k >= 1 and integer or floating values."""
    if len(shape) != 2 or shape[0] != length or shape[1] < 1:
        raise ValueError(f"{name} must have shape ({length}, k) (time, variables) to match neural, got {tuple(shape)}")
    if kind not in "fiu":
        raise TypeError(f"{name} must hold floating (or integer) values, got dtype kind {kind!r}")


def check_discrete_layout(name: str, shape: tuple[int, ...], kind: str, length: int) -> None:
    """Require ``(length,)`` integer labels."""
    if tuple(shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},) (time,) to match neural, got {tuple(shape)}")
    if kind not in "iu":
        raise TypeError(f"{name} must hold integer labels, got dtype kind {kind!r}")


def check_finite(name: str, values: torch.Tensor, first_time: int = 0) -> None:
    """Require no NaN or infinite entry in ``values (time, ...)``, whose row 0 is time ``first_time``."""
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).reshape(values.shape[0], -1).any(1).nonzero()[0])
        raise ValueError(f"{name} contains NaN or infinite values (first at time {first_time + bad})")


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {value.dtype}")
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _leading_size(tensor: torch.Tensor) -> int:
    """The number of time points a tensor claims (at least 1, so that an empty one fails the shape check)."""
    return max(tensor.shape[0], 1) if tensor.dim() else 1


def as_neural(name: str, value: ArrayLike) -> torch.Tensor:
    """``value`` checked and converted to float32 ``(time, channels)`` (memory shared where already float32)."""
    tensor = _as_tensor(name, value)
    check_neural_layout(name, tuple(tensor.shape), dtype_kind(tensor))
    tensor = tensor.float()
    check_finite(name, tensor)
    return tensor


def as_continuous(name: str, value: ArrayLike, length: int | None = None) -> torch.Tensor:
    """``value`` checked and converted to float32 ``(time, k)``; a ``(time,)`` vector becomes ``(time, 1)``.

    ``length`` is the required number of time points (``None``: any, at least 1).
    """
    tensor = _as_tensor(name, value)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(1)
    expected = _leading_size(tensor) if length is None else length
    check_continuous_layout(name, tuple(tensor.shape), dtype_kind(tensor), expected)
    tensor = tensor.float()
    check_finite(name, tensor)
    return tensor


def as_discrete(name: str, value: ArrayLike, length: int | None = None) -> torch.Tensor:
    """``value`` checked and converted to int64 labels ``(time,)``."""
    tensor = _as_tensor(name, value)
    expected = _leading_size(tensor) if length is None else length
    check_discrete_layout(name, tuple(tensor.shape), dtype_kind(tensor), expected)
    return tensor.long()


def segment_of(ends: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """For consecutive segments ending (exclusive) at ``ends (S,)``, the segment of each ``index`` (any shape).

    ``ends`` must be non-decreasing; O(log S) per index. (NumPy's searchsorted: for a batch of a few
    hundred indices, torch's parallel kernel spends milliseconds waking threads.)
    """
    segment = np.searchsorted(ends.numpy(), index.numpy(), side="right")
    return torch.from_numpy(np.asarray(segment, dtype=np.int64).reshape(index.shape))


def segment_runs(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The runs of equal consecutive ids in ``segments (T,)``: ``(starts (R,), stops (R,))`` int64, stops exclusive.

    A boundary lies wherever the id changes, so an id that reappears later
    (trial types, say) opens a new run.
    """
    change = torch.nonzero(segments[1:] != segments[:-1]).flatten() + 1
    starts = torch.cat([torch.zeros(1, dtype=torch.long), change])
    stops = torch.cat([change, torch.tensor([segments.shape[0]], dtype=torch.long)])
    return starts, stops


class Recording:
    """One session: neural activity with optional behaviour at the same time points.

    Args:
        neural: ``(time, channels)`` spike counts, rates or signals; stored as
            float32 (a float32 tensor or array is shared, not copied), or a
            :class:`RowReader` that stays on disk.
        continuous: optional ``(time, k)`` (or ``(time,)``) continuous
            auxiliary variables, stored as float32 ``(time, k)``.
        discrete: optional ``(time,)`` integer labels, stored as int64.
        name: the session's name (its group name in an HDF5 file).
        segments: optional ``(time,)`` integer segment ids (trial or session
            of each time point), stored as int64; see :func:`segment_runs`.
            Not a label: samplers keep windows and time positives inside one segment.

    Raises:
        TypeError / ValueError naming the argument: wrong type or dtype,
        wrong shape, lengths that differ from ``neural``'s, NaN or infinite
        values (a :class:`RowReader` is checked by whoever opened it).
    """

    def __init__(
        self,
        neural: ArrayLike | RowReader,
        continuous: ArrayLike | None = None,
        discrete: ArrayLike | None = None,
        name: str = "session0",
        segments: ArrayLike | None = None,
    ):
        if not isinstance(name, str) or not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
        if isinstance(neural, (torch.Tensor, np.ndarray)):
            neural = as_neural("neural", neural)
        elif isinstance(neural, RowReader):
            check_neural_layout("neural", tuple(neural.shape), dtype_kind(neural))
        else:
            raise TypeError(f"neural must be a torch.Tensor, numpy.ndarray or RowReader, got {type(neural).__name__}")
        length = neural.shape[0]
        self.neural = neural
        self.continuous = None if continuous is None else as_continuous("continuous", continuous, length)
        self.discrete = None if discrete is None else as_discrete("discrete", discrete, length)
        self.segments = None if segments is None else as_discrete("segments", segments, length)
        self.name = name

    def __len__(self) -> int:
        return self.neural.shape[0]

    def __repr__(self) -> str:
        return (
            f"Recording(name={self.name!r}, time={len(self)}, channels={self.num_channels}, "
            f"continuous={self.num_continuous}, discrete={self.discrete is not None}, "
            f"segments={self.num_segments}, in_memory={self.in_memory})"
        )

    @property
    def num_channels(self) -> int:
        """Neural channels C."""
        return self.neural.shape[1]

    @property
    def num_continuous(self) -> int:
        """Continuous variables k (0 without them)."""
        return 0 if self.continuous is None else self.continuous.shape[1]

    @functools.cached_property
    def segment_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(starts (R,), stops (R,))`` of the runs of equal segment ids (one run ``0 .. T`` without segments)."""
        if self.segments is None:
            return torch.zeros(1, dtype=torch.long), torch.tensor([len(self)])
        return segment_runs(self.segments)

    @property
    def num_segments(self) -> int:
        """R, the runs of equal segment ids (1 without segments)."""
        return int(self.segment_bounds[0].numel())

    @property
    def in_memory(self) -> bool:
        """Whether ``neural`` is a tensor (else a :class:`RowReader` on disk)."""
        return isinstance(self.neural, torch.Tensor)

    def read_neural(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Neural rows ``start .. stop - 1`` as float32 ``(stop - start, channels)``, read from disk if needed.

        For embedding a long on-disk recording in pieces.
        """
        stop = len(self) if stop is None else stop
        if not 0 <= start < stop <= len(self):
            raise ValueError(f"need 0 <= start < stop <= {len(self)}, got start={start}, stop={stop}")
        if self.in_memory:
            return self.neural[start:stop]
        return self.neural.read_rows(np.arange(start, stop, dtype=np.int64))


class MultiSessionRecording:
    """Several recordings whose auxiliary variables share their meaning, indexed globally.

    Session ``s`` holds global indices ``offsets[s] .. offsets[s + 1] - 1``;
    global index ``g`` is time ``g - offsets[s]`` of session ``s``. Channels
    (neurons) may differ between sessions.

    Args:
        sessions: the recordings, in order. Either all or none carry
            continuous variables (then with one k), and either all or none
            carry discrete labels.

    Attributes:
        sessions: tuple of :class:`Recording`.
        offsets: ``(num_sessions + 1,)`` int64, ``offsets[0] = 0`` and
            ``offsets[-1]`` the total number of time points.
    """

    def __init__(self, sessions: Sequence[Recording]):
        if isinstance(sessions, Recording) or not isinstance(sessions, Sequence) or len(sessions) == 0:
            raise ValueError("sessions must be a non-empty sequence of Recording")
        for s, recording in enumerate(sessions):
            if not isinstance(recording, Recording):
                raise TypeError(f"sessions[{s}] must be a Recording, got {type(recording).__name__}")
        k = {recording.num_continuous for recording in sessions}
        if len(k) != 1:
            raise ValueError(
                "sessions must share their continuous variables (all with the same k, or none); "
                f"got k = {[recording.num_continuous for recording in sessions]}"
            )
        with_discrete = [recording.discrete is not None for recording in sessions]
        if any(with_discrete) and not all(with_discrete):
            raise ValueError(f"sessions must all carry discrete labels or none do; got {with_discrete}")
        self.sessions = tuple(sessions)
        lengths = torch.tensor([len(recording) for recording in sessions])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, session: int) -> Recording:
        return self.sessions[session]

    def __iter__(self) -> Iterator[Recording]:
        return iter(self.sessions)

    def __repr__(self) -> str:
        return f"MultiSessionRecording({list(self.sessions)!r})"

    @property
    def num_sessions(self) -> int:
        """Number of sessions S."""
        return len(self.sessions)

    @property
    def session_lengths(self) -> list[int]:
        """Time points of each session."""
        return [len(recording) for recording in self.sessions]

    @property
    def num_continuous(self) -> int:
        """Continuous variables k shared by the sessions (0 without them)."""
        return self.sessions[0].num_continuous

    def locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global indices (any shape) to ``(session, time)``, two int64 tensors of that shape.

        O(log S) per index (a binary search in the offsets).
        """
        index = torch.as_tensor(index, dtype=torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            low, high = int(index.min()), int(index.max())
            raise ValueError(f"index must lie in [0, {len(self)}), got values in [{low}, {high}]")
        session = segment_of(self.offsets[1:], index)
        return session, index - self.offsets[session]

    def global_index(self, session: int, time: torch.Tensor) -> torch.Tensor:
        """Time points ``time`` (any shape) of ``session`` as global indices."""
        if not 0 <= session < self.num_sessions:
            raise ValueError(f"session must lie in [0, {self.num_sessions}), got {session}")
        time = torch.as_tensor(time, dtype=torch.long)
        length = len(self.sessions[session])
        if time.numel() and (int(time.min()) < 0 or int(time.max()) >= length):
            raise ValueError(f"time must lie in [0, {length}) for session {session}")
        return time + self.offsets[session]
