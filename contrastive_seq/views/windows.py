"""Windows around sampled time points: the inputs of an encoder with a receptive field.

The window of time ``t`` is ``neural[t - left_context : t + right_context + 1]``
laid out as ``(channels, W)`` with ``W = left_context + right_context + 1``
(the layout :class:`~contrastive_seq.models.timeseries.TimeSeriesEncoder`
takes). For a recording in memory the windows are indexed from a strided view
(``Tensor.unfold``: every window of the recording, no copy), so a batch costs
one gather and no Python loop over it. For a recording on disk
(:class:`~contrastive_seq.data.hdf5.HDF5TimeSeries`) the rows of all of a
batch's windows are gathered, deduplicated and sorted, read in one call, and
mapped back: only the rows the batch needs are ever read.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from contrastive_seq.data.recording import MultiSessionRecording, Recording, RowReader
from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.sampling.time import check_context
from contrastive_seq.views.base import Views


def gather_windows(
    neural: torch.Tensor | RowReader, times: torch.Tensor, left_context: int, right_context: int
) -> torch.Tensor:
    """Windows ``(n, channels, W)`` float32 around ``times (n,)``, which must all be valid.

    Args:
        neural: ``(T, channels)`` float32 tensor, or a :class:`RowReader` (read once, unique sorted rows).
        times: int64 time points with ``left_context <= t < T - right_context``.
        left_context, right_context: the window's reach before and after ``t``.
    """
    width = left_context + right_context + 1
    if isinstance(neural, torch.Tensor):
        every_window = neural.unfold(0, width, 1)  # (T - W + 1, channels, W), a view
        return every_window[times - left_context]
    rows = times.unsqueeze(1) + torch.arange(-left_context, right_context + 1)  # (n, W)
    unique_rows, position = torch.unique(rows, sorted=True, return_inverse=True)
    block = neural.read_rows(unique_rows.numpy().astype(np.int64))  # (u, channels)
    return rearrange(block[position], "n w c -> n c w")


def gather_window_groups(
    neural: torch.Tensor | RowReader, groups: list[torch.Tensor], left_context: int, right_context: int
) -> list[torch.Tensor]:
    """Windows of several index tensors of one recording in one gather: ``groups[i].shape + (channels, W)`` each."""
    flat = torch.cat([group.reshape(-1) for group in groups])
    windows = gather_windows(neural, flat, left_context, right_context)
    pieces = windows.split([group.numel() for group in groups])
    return [piece.reshape(*group.shape, *piece.shape[1:]) for piece, group in zip(pieces, groups)]


def check_times(name: str, times: torch.Tensor, length: int, left_context: int, right_context: int) -> None:
    """Require every time point's window to fit a recording of ``length`` time points."""
    if times.numel() == 0:
        return
    low, high = int(times.min()), int(times.max())
    if low < left_context or high >= length - right_context:
        raise ValueError(
            f"{name} holds time points in [{low}, {high}], but only {left_context}..{length - right_context - 1} "
            f"have a window inside the recording of {length} (left_context={left_context}, "
            f"right_context={right_context}); give the sampler the encoder's left_context and right_context"
        )


class _WindowViewsBase(Views):
    def __init__(self, left_context: int = 0, right_context: int = 0):
        self.left_context, self.right_context = check_context(left_context, right_context)

    @property
    def window(self) -> int:
        """W = left_context + right_context + 1."""
        return self.left_context + self.right_context + 1

    @classmethod
    def for_encoder(cls, encoder: object) -> _WindowViewsBase:
        """Views with the margins of ``encoder`` (its ``left_context`` and ``right_context`` attributes)."""
        return cls(encoder.left_context, encoder.right_context)


class WindowViews(_WindowViewsBase):
    """Windows for the references, positives and negatives of one recording.

    ``views(recording, pairs, generator)`` returns::

        {"reference": (N, C, W),
         "positive":  (P, N, C, W),      # column p of pairs.positive is positive[p]
         "negative":  (M, C, W),         # shared negatives; (N, K, C, W) for per-reference ones
         "index":     (N,),              # the references' time points
         "labels":    (N,)}              # only when the sampler gave labels

    (no ``"negative"`` when ``pairs.negative`` is ``None``). All windows of a
    batch come from one gather (one read for a recording on disk); the
    generator is unused (windows are deterministic). Indices whose window
    leaves the recording are an error.

    Args:
        left_context, right_context: the encoder's margins; W = left + right + 1.
    """

    def __call__(  # noqa: D102
        self, dataset: Recording, pairs: PairIndex, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not isinstance(dataset, Recording):
            raise TypeError(f"dataset must be a Recording, got {type(dataset).__name__}")
        groups = {"reference": pairs.reference, "positive": pairs.positive.T}
        if pairs.negative is not None:
            groups["negative"] = pairs.negative
        for name, times in groups.items():
            check_times(f"pairs.{name}", times, len(dataset), self.left_context, self.right_context)
        windows = gather_window_groups(dataset.neural, list(groups.values()), self.left_context, self.right_context)
        batch = dict(zip(groups, windows))
        batch["index"] = pairs.reference
        if pairs.labels is not None:
            batch["labels"] = pairs.labels
        return batch


class MultiSessionWindowViews(_WindowViewsBase):
    """Windows of a multi-session batch, one block per session (channels differ between sessions).

    Expects the block layout of
    :class:`~contrastive_seq.sampling.multisession.MultiSessionSampler` on
    global indices of a :class:`MultiSessionRecording` of S sessions:
    ``N = S * B`` rows, reference block ``s`` in session ``s``, positive block
    ``s`` in one session ``σ(s)``, shared negatives ``(S * K,)`` with block
    ``s`` in session ``s``. ``views(recordings, pairs, generator)`` returns::

        {"reference":        [ (B, C_s, W) for s in sessions ],
         "positive":         [ (P, B, C_σ(s), W) for s in sessions ],   # block s, from session σ(s)
         "negative":         [ (K, C_s, W) for s in sessions ],
         "positive_session": (S,) int64, σ,
         "index":            (N,) global reference indices}

    A method with one encoder per session applies encoder ``s`` to
    ``reference[s]`` and ``negative[s]`` and encoder ``positive_session[s]``
    to ``positive[s]``. Each session's windows come from one gather (one read on disk).

    Args:
        left_context, right_context: the encoders' margins; W = left + right + 1.
    """

    def __call__(  # noqa: D102
        self, dataset: MultiSessionRecording, pairs: PairIndex, generator: torch.Generator
    ) -> dict[str, object]:
        if not isinstance(dataset, MultiSessionRecording):
            raise TypeError(f"dataset must be a MultiSessionRecording, got {type(dataset).__name__}")
        if pairs.negative is not None and pairs.negative.dim() != 1:
            raise ValueError(f"pairs.negative must be shared, of shape (S * K,), got {tuple(pairs.negative.shape)}")
        sessions = dataset.num_sessions
        reference = self._session_blocks("pairs.reference", pairs.reference, dataset)
        positive = self._session_blocks("pairs.positive", pairs.positive, dataset)
        negative = None if pairs.negative is None else self._session_blocks("pairs.negative", pairs.negative, dataset)
        for s, (session, _) in enumerate(reference):
            if session != s:
                raise ValueError(f"pairs.reference block {s} must lie in session {s}, it lies in session {session}")
            if negative is not None and negative[s][0] != s:
                raise ValueError(
                    f"pairs.negative block {s} must lie in session {s}, it lies in session {negative[s][0]}"
                )
        positive_session = torch.tensor([session for session, _ in positive])
        reference_windows, negative_windows, positive_windows = [], [], [None] * sessions
        for s in range(sessions):
            own_positive_blocks = [b for b in range(sessions) if int(positive_session[b]) == s]
            groups = [reference[s][1]] + [positive[b][1].T for b in own_positive_blocks]
            if negative is not None:
                groups.append(negative[s][1])
            windows = gather_window_groups(dataset[s].neural, groups, self.left_context, self.right_context)
            reference_windows.append(windows[0])
            for b, piece in zip(own_positive_blocks, windows[1:]):
                positive_windows[b] = piece
            if negative is not None:
                negative_windows.append(windows[-1])
        batch: dict[str, object] = {
            "reference": reference_windows,
            "positive": positive_windows,
            "positive_session": positive_session,
        }
        if negative is not None:
            batch["negative"] = negative_windows
        batch["index"] = pairs.reference
        return batch

    def _session_blocks(
        self, name: str, index: torch.Tensor, dataset: MultiSessionRecording
    ) -> list[tuple[int, torch.Tensor]]:
        """Split ``index`` (rows first) into S equal blocks, each as ``(its session, local time points)``."""
        sessions = dataset.num_sessions
        if index.shape[0] % sessions:
            raise ValueError(f"{name} has {index.shape[0]} rows, which must split into {sessions} equal session blocks")
        session, time = dataset.locate(index)
        blocks = []
        for s, (block_session, block_time) in enumerate(zip(session.chunk(sessions), time.chunk(sessions))):
            first = int(block_session.reshape(-1)[0])
            if not bool((block_session == first).all()):
                mixed = block_session.unique().tolist()
                raise ValueError(f"{name} block {s} mixes sessions {mixed}; a block must lie in one")
            check_times(f"{name} block {s}", block_time, len(dataset[first]), self.left_context, self.right_context)
            blocks.append((first, block_time))
        return blocks
