"""Recordings in HDF5 (h5py): one file, one group per session, neural data readable without loading it.

Layout (format version 1)::

    /                        attrs: format = "contrastive_seq.recordings", format_version = 1
    /sessions                attrs: order = [names of the sessions, in order]
    /sessions/<name>/neural      (time, channels)  float32 (any integer or float type is read)
    /sessions/<name>/continuous  (time, k)         float32, optional
    /sessions/<name>/discrete    (time,)           int64 (any integer type), optional

Every dataset the package writes carries a Fletcher-32 checksum per chunk
(h5py's ``fletcher32`` filter, see :func:`create_checked_dataset`): reading
a damaged chunk fails, and every read names the file and member that
failed (:func:`member`, :func:`read_values`). ``neural`` is stored in
chunks of about 64 KiB of whole rows, not compressed: a batch of windows
reads only the chunks its rows lie in, which is what training from a file
larger than memory needs. :func:`save_recordings`,
like every HDF5 writer of the package, goes through
:func:`write_hdf5_atomically`: a temporary file next to the target, renamed
over it (``os.replace``), so a crash never leaves a half-written file under
that name.

:func:`load_recordings` with ``in_memory=False`` keeps every ``neural``
dataset on disk as an :class:`HDF5TimeSeries` (continuous and discrete
labels, which are small, are loaded); :class:`~contrastive_seq.views.windows.WindowViews`
then reads only the rows each batch needs, in one read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import torch

from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.data.recording import (
    MultiSessionRecording,
    Recording,
    as_continuous,
    as_discrete,
    as_neural,
    check_continuous_layout,
    check_discrete_layout,
    check_finite,
    check_neural_layout,
)

FORMAT = "contrastive_seq.recordings"
FORMAT_VERSION = 1
SESSION_MEMBERS = ("neural", "continuous", "discrete")
_FINITE_CHECK_ELEMENTS = 1 << 22  # values per block when scanning an on-disk array
_CHUNK_BYTES = 1 << 16  # target size of a chunk of `neural`


def create_checked_dataset(group: h5py.Group, name: str, **options: object) -> h5py.Dataset:
    """``group.create_dataset(name, **options)`` with a Fletcher-32 checksum on every chunk (chunked by h5py when
    ``options`` give no ``chunks``): a read of a damaged chunk then raises instead of returning wrong values."""
    return group.create_dataset(name, fletcher32=True, **options)


def member(group: h5py.Group, name: str, where: str) -> h5py.Dataset | h5py.Group | None:
    """``group[name]``, or ``None`` when there is no link of that name; a link whose object cannot be opened
    (a damaged object header) raises instead of reading as missing (what ``group.get`` does).

    Raises:
        ValueError: naming ``where/name`` when the member exists but cannot be opened.
    """
    try:
        if name not in group:
            return None
        return group[name]
    except (KeyError, OSError, RuntimeError) as error:
        raise ValueError(f"{where}/{name} exists but cannot be read (the file is damaged: {error})") from error


def read_values(dataset: h5py.Dataset, where: str, selection: object = ()) -> np.ndarray:
    """``dataset[selection]``; a read error (a failed checksum, a damaged chunk) raises naming ``where``.

    Raises:
        ValueError: naming ``where`` (the file and member) when HDF5 cannot read the values.
    """
    try:
        return dataset[selection]
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{where} cannot be read (the file is damaged: {error})") from error


def write_strings(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    """``values`` as the group ``group/name``: ``bytes`` (their UTF-8 encodings concatenated, uint8) and
    ``offsets`` (``(len(values) + 1,)`` int64; string ``i`` is ``bytes[offsets[i]:offsets[i + 1]]``).

    HDF5 refuses the Fletcher-32 filter on variable-length strings; stored
    this way, both datasets carry a checksum (:func:`create_checked_dataset`).
    """
    encoded = [value.encode("utf-8") for value in values]
    strings = group.create_group(name)
    create_checked_dataset(strings, "bytes", data=np.frombuffer(b"".join(encoded), dtype=np.uint8))
    lengths = np.array([len(value) for value in encoded], dtype=np.int64)
    create_checked_dataset(strings, "offsets", data=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def read_strings(group: h5py.Group, name: str, where: str) -> list[str]:
    """The strings ``group/name`` as :func:`write_strings` stores them, or as a 1-D string dataset (files
    written before checksummed strings).

    Raises:
        ValueError: naming ``where:name`` (and the member) when it is missing, damaged or inconsistent.
    """
    value = member(group, name, where)
    if isinstance(value, h5py.Dataset):
        stored = read_dataset(group, name, where, ndim=1, kinds="SOU")
        return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in stored]
    if not isinstance(value, h5py.Group):
        raise ValueError(f"{where} has no strings {name!r} (a group holding 'bytes' and 'offsets')")
    inside = f"{where}/{name}"
    data = read_dataset(value, "bytes", inside, ndim=1, kinds="u").tobytes()
    offsets = read_dataset(value, "offsets", inside, ndim=1, kinds="iu")
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(data) or (np.diff(offsets) < 0).any():
        raise ValueError(f"{inside}:offsets must rise from 0 to {len(data)}, the length of {inside}:bytes")
    try:
        return [data[start:stop].decode("utf-8") for start, stop in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as error:
        raise ValueError(f"{inside}:bytes is not valid UTF-8 ({error})") from error


class HDF5TimeSeries:
    """A ``(time, channels)`` dataset of an HDF5 file, left on disk and read row by row on demand.

    Follows :class:`~contrastive_seq.data.recording.RowReader`. The file is
    opened on first read in each process (and never pickled), so DataLoader
    workers, forked or spawned, each read through their own handle.

    Args:
        path: the HDF5 file.
        key: the dataset's path inside it, e.g. ``"/sessions/rat1/neural"``.
    """

    def __init__(self, path: str | os.PathLike, key: str):
        self.path = Path(path)
        self.key = key
        with open_for_reading(self.path) as file:
            dataset = member(file, key, str(self.path))
            if not isinstance(dataset, h5py.Dataset):
                found = "nothing" if dataset is None else f"a {type(dataset).__name__}"
                raise ValueError(f"{self.path}:{key} must be a dataset, found {found}")
            self.shape = tuple(dataset.shape)
            self.dtype = dataset.dtype
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"HDF5TimeSeries({str(self.path)!r}, {self.key!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.key]

    def read_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Rows ``rows`` (int64, strictly increasing) in one read: ``(len(rows), channels)`` float32.

        A contiguous run is read as a slice, anything else as one h5py
        point selection; nothing outside ``rows`` is read into memory.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise ValueError(f"rows must be 1-D, got shape {rows.shape}")
        if rows.size == 0:
            return torch.empty(0, self.shape[1])
        if rows[0] < 0 or rows[-1] >= self.shape[0] or (rows.size > 1 and bool((np.diff(rows) <= 0).any())):
            raise ValueError(f"rows must be strictly increasing indices in [0, {self.shape[0]})")
        dataset = self._dataset()
        where = f"{self.path}:{self.key}"
        if rows[-1] - rows[0] + 1 == rows.size:
            values = read_values(dataset, where, slice(int(rows[0]), int(rows[-1]) + 1))
        else:
            values = read_values(dataset, where, rows)
        return torch.from_numpy(np.asarray(values, dtype=np.float32))

    def close(self) -> None:
        """Close this process's handle (the next read reopens it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def open_for_reading(path: Path) -> h5py.File:
    """``path`` opened read-only with h5py.

    Raises:
        FileNotFoundError: naming ``path`` when there is no file.
        ValueError: naming ``path`` when HDF5 cannot read it (not HDF5, truncated, corrupt).
    """
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected an HDF5 file")
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        reason = f"corrupt, truncated or another format: {error}"
        raise ValueError(f"{path} is not a readable HDF5 file ({reason})") from error


def read_dataset(
    file: h5py.File | h5py.Group, key: str, where: str, ndim: int | None = None, kinds: str | None = None
) -> np.ndarray:
    """The whole dataset ``file[key]`` as an array, checked.

    Args:
        file: an open file or group.
        key: the dataset's name in it.
        where: how errors name the file (``"path"`` or ``"path:/group"``).
        ndim: the rank the dataset must have (``None``: any).
        kinds: the numpy dtype kinds it may have, e.g. ``"iu"`` for integers,
            ``"f"`` for floats, ``"SOU"`` for strings (``None``: any).

    Raises:
        ValueError: naming ``where:key`` when the dataset is missing, is a group,
            cannot be read, or has another rank or dtype kind.
    """
    value = member(file, key, where)
    if value is None:
        raise ValueError(f"{where} has no dataset {key!r}; it holds {sorted(file.keys())}")
    if not isinstance(value, h5py.Dataset):
        raise ValueError(f"{where}:{key} must be a dataset, got a {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{where}:{key} must have {ndim} dimension(s), got shape {value.shape}")
    if kinds is not None and value.dtype.kind not in kinds:
        raise ValueError(f"{where}:{key} must have a dtype of kind {kinds!r}, got {value.dtype}")
    return read_values(value, f"{where}:{key}")


def _as_session_list(recordings: Recording | MultiSessionRecording | Sequence[Recording]) -> list[Recording]:
    if isinstance(recordings, Recording):
        return [recordings]
    if isinstance(recordings, MultiSessionRecording):
        return list(recordings.sessions)
    return list(MultiSessionRecording(recordings).sessions)


def _write_neural(group: h5py.Group, recording: Recording) -> None:
    shape = (len(recording), recording.num_channels)
    chunks = (max(1, min(shape[0], _CHUNK_BYTES // (4 * shape[1]))), shape[1])
    if recording.in_memory:
        create_checked_dataset(group, "neural", data=recording.neural.numpy(), chunks=chunks)
        return
    dataset = create_checked_dataset(group, "neural", shape=shape, dtype=np.float32, chunks=chunks)
    block = max(1, _FINITE_CHECK_ELEMENTS // shape[1])
    for start in range(0, shape[0], block):
        stop = min(start + block, shape[0])
        dataset[start:stop] = recording.read_neural(start, stop).numpy()


def save_recordings(
    path: str | os.PathLike, recordings: Recording | MultiSessionRecording | Sequence[Recording]
) -> Path:
    """Write one or several sessions to ``path`` in the layout of this module, atomically.

    Args:
        path: the target file (replaced if it exists).
        recordings: a :class:`Recording`, a :class:`MultiSessionRecording` or
            a sequence of recordings; their names must be distinct.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    sessions = _as_session_list(recordings)
    names = [recording.name for recording in sessions]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"recordings must have distinct names to be saved, got duplicates {duplicates}")

    def fill(file: h5py.File) -> None:
        file.attrs["format"] = FORMAT
        file.attrs["format_version"] = FORMAT_VERSION
        group = file.create_group("sessions")
        group.attrs["order"] = names
        for recording in sessions:
            session = group.create_group(recording.name)
            _write_neural(session, recording)
            if recording.continuous is not None:
                create_checked_dataset(session, "continuous", data=recording.continuous.numpy())
            if recording.discrete is not None:
                create_checked_dataset(session, "discrete", data=recording.discrete.numpy())

    return write_hdf5_atomically(path, fill)


def write_hdf5_atomically(path: str | os.PathLike, fill: Callable[[h5py.File], object]) -> Path:
    """Create or replace the HDF5 file ``path`` whole: ``fill`` writes into it, opened for writing, before a rename.

    A crash, a kill or a full disk during ``fill`` leaves ``path`` as it
    was (see :func:`contrastive_seq.atomic_files.write_atomically`).
    """

    def write(file: BinaryIO) -> None:
        with h5py.File(file, "w") as opened:
            fill(opened)

    return write_atomically(path, write)


def _check_format(file: h5py.File, where: str) -> list[str]:
    """The session names of an opened file, after checking its format attributes and groups."""
    if file.attrs.get("format") != FORMAT:
        raise ValueError(f"{where} is not a recordings file: its root attribute 'format' is not {FORMAT!r}")
    version = file.attrs.get("format_version")
    if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= FORMAT_VERSION:
        shown = int(version) if isinstance(version, np.integer) else repr(version)
        raise ValueError(f"{where} has format_version {shown}; this library reads versions 1 to {FORMAT_VERSION}")
    if not isinstance(member(file, "sessions", f"{where}:"), h5py.Group):
        raise ValueError(f"{where}:/sessions is missing: the file holds no session group")
    order = [str(name) for name in file["sessions"].attrs.get("order", [])]
    stored = set(file["sessions"].keys())
    if not order or set(order) != stored or len(order) != len(stored):
        raise ValueError(
            f"{where}:/sessions attribute 'order' must list each session group once; "
            f"it lists {order}, the groups are {sorted(stored)}"
        )
    return order


def _dataset(group: h5py.Group, name: str, where: str) -> h5py.Dataset | None:
    value = member(group, name, where)
    if value is not None and not isinstance(value, h5py.Dataset):
        raise ValueError(f"{where}/{name} must be a dataset, got a {type(value).__name__}")
    return value


def _check_finite_on_disk(name: str, dataset: h5py.Dataset) -> None:
    """NaN / infinity check of a 2-D dataset in row blocks, without loading it whole."""
    if dataset.dtype.kind != "f":
        return
    block = max(1, _FINITE_CHECK_ELEMENTS // dataset.shape[1])
    for start in range(0, dataset.shape[0], block):
        check_finite(name, torch.from_numpy(read_values(dataset, name, slice(start, start + block))), first_time=start)


def _read_session(file: h5py.File, path: Path, name: str, in_memory: bool, check_finite_values: bool) -> Recording:
    where = f"{path}:/sessions/{name}"
    group = member(file["sessions"], name, f"{path}:/sessions")
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{where} must be a group holding the session's datasets")
    unknown = sorted(set(group.keys()) - set(SESSION_MEMBERS))
    if unknown:
        raise ValueError(f"{where} holds unknown members {unknown}; expected only {list(SESSION_MEMBERS)}")
    neural = _dataset(group, "neural", where)
    if neural is None:
        raise ValueError(f"{where}/neural is missing: every session needs a (time, channels) neural dataset")
    check_neural_layout(f"{where}/neural", neural.shape, neural.dtype.kind)
    length = neural.shape[0]
    continuous = _dataset(group, "continuous", where)
    if continuous is not None:
        check_continuous_layout(f"{where}/continuous", continuous.shape, continuous.dtype.kind, length)
        continuous = as_continuous(f"{where}/continuous", read_values(continuous, f"{where}/continuous"), length)
    discrete = _dataset(group, "discrete", where)
    if discrete is not None:
        check_discrete_layout(f"{where}/discrete", discrete.shape, discrete.dtype.kind, length)
        discrete = as_discrete(f"{where}/discrete", read_values(discrete, f"{where}/discrete"), length)
    if in_memory:
        values = as_neural(f"{where}/neural", read_values(neural, f"{where}/neural"))
    else:
        if check_finite_values:
            _check_finite_on_disk(f"{where}/neural", neural)
        values = HDF5TimeSeries(path, neural.name)
    return Recording(values, continuous, discrete, name=name)


def load_recordings(
    path: str | os.PathLike, in_memory: bool = True, check_finite_values: bool = True
) -> MultiSessionRecording:
    """Read every session of a recordings file, in its stored order.

    Args:
        path: a file written by :func:`save_recordings` (or by hand in its layout).
        in_memory: load ``neural`` into memory (float32); ``False`` leaves it
            on disk as an :class:`HDF5TimeSeries`.
        check_finite_values: with ``in_memory=False``, scan ``neural`` for
            NaN / infinity in blocks (one pass over the file). In memory the
            check always runs.

    Raises:
        FileNotFoundError naming ``path``; ValueError naming ``path`` for a file
        HDF5 cannot read; ValueError / TypeError naming the
        dataset (``path:/sessions/<name>/<member>``) for a missing ``neural``,
        wrong shapes, wrong dtypes, NaN / infinity, unknown members, or a
        file of another format or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recordings file {path} does not exist")
    with open_for_reading(path) as file:
        names = _check_format(file, str(path))
        sessions = [_read_session(file, path, name, in_memory, check_finite_values) for name in names]
    return MultiSessionRecording(sessions)


def load_recording(
    path: str | os.PathLike, session: str | None = None, in_memory: bool = True, check_finite_values: bool = True
) -> Recording:
    """Read one session: ``session`` by name, or the file's only session when ``None``.

    Arguments and errors as :func:`load_recordings`; reads only that session's datasets.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recordings file {path} does not exist")
    with open_for_reading(path) as file:
        names = _check_format(file, str(path))
        if session is None and len(names) != 1:
            raise ValueError(f"{path} holds {len(names)} sessions {names}; pass session=<name> to pick one")
        name = names[0] if session is None else session
        if name not in names:
            raise ValueError(f"session {name!r} is not in {path}; it holds {names}")
        return _read_session(file, path, name, in_memory, check_finite_values)
