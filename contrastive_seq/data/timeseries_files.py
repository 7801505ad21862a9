"""A recording from the user's own files: .npy / .npz, CSV, HDF5 with the user's dataset names.

:func:`load_timeseries` reads one :class:`~contrastive_seq.data.recording.Recording`
and takes **only the labels the user names**: a file that also holds trial
ids, rewards or timestamps gives nothing but ``neural`` unless a label
argument names them. Every argument is a plain string or list of strings, so
a config section passes its fields straight through::

    load_timeseries("rat1.npz", neural="spikes", continuous=["position", "speed"],
                    discrete="direction", segments="trial")

- ``neural``: the ``(time, channels)`` array (a key of the .npz, a dataset of
  the HDF5 file, or CSV columns).
- ``continuous``: one name or several; each ``(time,)`` or ``(time, k)``,
  joined along the variables in the order given (``(time, k_total)``).
- ``discrete``: one name, ``(time,)`` integer labels. Floating values are
  accepted only when every one is a whole number (trial ids saved as
  floats); anything else is an error, never a silent continuous label.
- ``segments``: one name, ``(time,)`` segment ids (trial or session of each
  time point; numbers or, in CSV, text). A change of id is a boundary that
  no window and no time positive crosses; segments are not labels.

Errors name the file and the key, column or row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from contrastive_seq.data.hdf5 import FORMAT, HDF5TimeSeries, _check_finite_on_disk, load_recording, open_for_reading
from contrastive_seq.data.recording import Recording, as_continuous, as_discrete, as_neural, check_neural_layout

NUMPY_SUFFIXES = (".npy", ".npz")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

Names = str | Sequence[str] | None


def _names(argument: str, value: Names) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{argument} must be a name or a list of names, got {value!r}")


def _one_name(argument: str, value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{argument} must be one name (a string), got {value!r}")
    return value


def whole_numbers(where: str, values: np.ndarray) -> np.ndarray:
    """``values`` as int64 when they are integers, or floats that are all whole numbers.

    Raises:
        ValueError naming ``where`` for a fractional, NaN or infinite value (with its row), or a non-numeric dtype.
    """
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    if values.dtype.kind != "f":
        raise ValueError(f"{where} must hold integers, got dtype {values.dtype}")
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.argmax(bad.reshape(values.shape[0], -1).any(1)))
        raise ValueError(
            f"{where} must hold integers (whole numbers); row {row} holds {values.reshape(values.shape[0], -1)[row]}. "
            "A continuous variable belongs in continuous="
        )
    return values.astype(np.int64)


def segment_ids(where: str, values: np.ndarray) -> np.ndarray:
    """Segment ids ``(time,)`` as int64: numbers (whole) as they are, text numbered in order of appearance."""
    if values.dtype.kind in "OUS":
        _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        return np.argsort(np.argsort(first))[inverse].astype(np.int64)
    return whole_numbers(where, values)


def _build(
    where: Callable[[str], str],
    read: Callable[[str], np.ndarray],
    neural: object,
    continuous: list[str],
    discrete: str | None,
    segments: str | None,
    name: str,
) -> Recording:
    """A recording from ``read(name) -> array`` for each named label; ``where(name)`` says where errors point."""
    length = neural.shape[0]
    parts = [as_continuous(where(key), _numeric(where(key), read(key)), length) for key in continuous]
    joined = None if not parts else np.concatenate([part.numpy() for part in parts], axis=1)
    labels = ids = None
    if discrete is not None:
        labels = as_discrete(where(discrete), whole_numbers(where(discrete), read(discrete)), length)
    if segments is not None:
        ids = as_discrete(where(segments), segment_ids(where(segments), read(segments)), length)
    return Recording(neural, joined, labels, name=name, segments=ids)


def _numeric(where: str, values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold numbers, got dtype {values.dtype}")
    return values


def load_timeseries(
    path: str | os.PathLike,
    neural: str | Sequence[str] | None = None,
    continuous: Names = None,
    discrete: str | None = None,
    segments: str | None = None,
    name: str | None = None,
    session: str | None = None,
    in_memory: bool = True,
    delimiter: str | None = None,
) -> Recording:
    """One recording from a .npy, .npz, CSV or HDF5 file, with the labels named and no others.

    Args:
        path: the file; its suffix picks the reader (``.npy``, ``.npz``,
            ``.csv`` / ``.tsv`` / ``.txt``, ``.h5`` / ``.hdf5``).
        neural: the ``(time, channels)`` array: a key of the .npz (may be
            omitted when it holds a single array), a dataset path of the HDF5
            file, or a list of CSV columns (omitted: every column not named
            by another argument). Not used for a .npy file, which holds only it.
        continuous: name(s) of continuous variables (see the module docstring).
        discrete: name of the integer labels.
        segments: name of the segment ids (trials, sessions).
        name: the recording's name (default: the file's stem).
        session: for a file in the library's own layout (written by
            :func:`~contrastive_seq.data.hdf5.save_recordings`), the session
            to read (may be omitted when it holds one); there the label names
            are the session's members, ``continuous="continuous"`` and
            ``discrete="discrete"``.
        in_memory: for HDF5, ``False`` leaves ``neural`` on disk and reads
            the rows each batch needs (after one pass checking for NaN).
        delimiter: the CSV separator (default: tab for ``.tsv``, else comma).

    Returns:
        a :class:`Recording` with ``neural`` and only the labels and segments named.

    Raises:
        FileNotFoundError naming the file; IsADirectoryError when ``path`` is a
        folder; ValueError / TypeError naming the file and key, column or row
        for a missing name, wrong shapes or lengths, non-numeric values,
        fractional discrete labels or NaN.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; load_timeseries expects a file (.npy, .npz, .csv, .h5)")
    if not path.is_file():
        raise FileNotFoundError(f"time-series file {path} does not exist")
    continuous = _names("continuous", continuous)
    discrete, segments = _one_name("discrete", discrete), _one_name("segments", segments)
    name = path.stem if name is None else name
    suffix = path.suffix.lower()
    if suffix in NUMPY_SUFFIXES:
        return _load_numpy(path, neural, continuous, discrete, segments, name)
    if suffix in CSV_SUFFIXES:
        return _load_csv(path, neural, continuous, discrete, segments, name, delimiter)
    if suffix in HDF5_SUFFIXES:
        return _load_hdf5(path, neural, continuous, discrete, segments, name, session, in_memory)
    known = NUMPY_SUFFIXES + CSV_SUFFIXES + HDF5_SUFFIXES
    raise ValueError(f"{path}: unknown suffix {path.suffix!r}; load_timeseries reads {', '.join(known)}")


def _load_numpy(
    path: Path, neural: object, continuous: list[str], discrete: str | None, segments: str | None, name: str
) -> Recording:
    try:
        loaded = np.load(path, allow_pickle=False)
    except OSError as error:
        raise ValueError(f"{path} is not a readable NumPy file ({error})") from error
    except ValueError as error:  # numpy's reason here speaks of pickles: any unknown header ends up there
        raise ValueError(
            f"{path} is not .npy / .npz numeric data: damaged, another format, or object arrays (never unpickled)"
        ) from error
    if isinstance(loaded, np.ndarray):
        if neural is not None or continuous or discrete or segments:
            raise ValueError(
                f"{path} is a .npy file holding one array (neural); save neural and labels together "
                "in a .npz (numpy.savez) to name them"
            )
        return Recording(as_neural(str(path), loaded), name=name)
    with loaded:
        keys = list(loaded.files)
        if neural is None:
            if len(keys) != 1:
                raise ValueError(f"{path} holds arrays {keys}; pass neural=<key> to say which is the neural data")
            neural = keys[0]
        neural = _one_name("neural", neural)

        def read(key: str) -> np.ndarray:
            if key not in keys:
                raise ValueError(f"{path} has no array {key!r}; it holds {keys}")
            try:
                return loaded[key]
            except ValueError as error:  # object arrays need pickle
                raise ValueError(f"{path}:{key} cannot be read without pickle ({error})") from error

        values = as_neural(f"{path}:{neural}", _numeric(f"{path}:{neural}", read(neural)))
        return _build(lambda key: f"{path}:{key}", read, values, continuous, discrete, segments, name)


def _read_csv_columns(path: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty; a CSV time series needs a header row naming its columns")
        rows = [row for row in reader if row]
    if not rows:
        raise ValueError(f"{path} has a header but no rows")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path} line {number} has {len(row)} fields, the header has {len(header)}")
    return header, rows


def _column(path: Path, header: list[str], rows: list[list[str]], key: str, text: bool = False) -> np.ndarray:
    if key not in header:
        raise ValueError(f"{path} has no column {key!r}; its columns are {header}")
    j = header.index(key)
    cells = [row[j] for row in rows]
    try:
        return np.array([int(cell) for cell in cells], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        if text:
            return np.array(cells, dtype=object)
        line = next(number for number, cell in enumerate(cells, start=2) if not _is_number(cell))
        raise ValueError(f"{path} line {line} column {key!r}: {cells[line - 2]!r} is not a number") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_csv(
    path: Path,
    neural: object,
    continuous: list[str],
    discrete: str | None,
    segments: str | None,
    name: str,
    delimiter: str | None,
) -> Recording:
    delimiter = ("\t" if path.suffix.lower() == ".tsv" else ",") if delimiter is None else delimiter
    header, rows = _read_csv_columns(path, delimiter)
    named = set(continuous) | {discrete, segments} - {None}
    columns = [c for c in header if c not in named] if neural is None else _names("neural", neural)
    if not columns:
        raise ValueError(f"{path}: no column is left for neural; its columns are {header}")
    values = np.stack([_column(path, header, rows, key) for key in columns], axis=1)
    neural_values = as_neural(f"{path} columns {columns}", values.astype(np.float32))

    def read(key: str) -> np.ndarray:
        return _column(path, header, rows, key, text=key == segments)

    return _build(lambda key: f"{path} column {key!r}", read, neural_values, continuous, discrete, segments, name)


def _datasets(file: h5py.File) -> list[str]:
    found: list[str] = []
    file.visititems(lambda key, item: found.append(key) if isinstance(item, h5py.Dataset) else None)
    return found


def _load_hdf5(
    path: Path,
    neural: object,
    continuous: list[str],
    discrete: str | None,
    segments: str | None,
    name: str,
    session: str | None,
    in_memory: bool,
) -> Recording:
    with open_for_reading(path) as file:
        library_layout = file.attrs.get("format") == FORMAT
    if library_layout:
        return _load_library_layout(path, neural, continuous, discrete, segments, session, in_memory)
    with open_for_reading(path) as file:
        if neural is None:
            raise ValueError(f"{path} holds datasets {_datasets(file)}; pass neural=<dataset> to name the neural data")
        neural = _one_name("neural", neural)

        def dataset(key: str) -> h5py.Dataset:
            item = file.get(key)
            if not isinstance(item, h5py.Dataset):
                found = "nothing" if item is None else "a group"
                raise ValueError(f"{path}:{key} must be a dataset, found {found}; the file holds {_datasets(file)}")
            return item

        where = f"{path}:{neural}"
        data = dataset(neural)
        check_neural_layout(where, data.shape, data.dtype.kind)
        if in_memory:
            values = as_neural(where, data[()])
        else:
            _check_finite_on_disk(where, data)
            values = HDF5TimeSeries(path, data.name)
        return _build(
            lambda key: f"{path}:{key}", lambda key: dataset(key)[()], values, continuous, discrete, segments, name
        )


def _load_library_layout(
    path: Path,
    neural: object,
    continuous: list[str],
    discrete: str | None,
    segments: str | None,
    session: str | None,
    in_memory: bool,
) -> Recording:
    """A session of a file in the library's layout, keeping only the labels named."""
    for argument, value, member in (
        ("neural", [neural] if neural is not None else [], "neural"),
        ("continuous", continuous, "continuous"),
        ("discrete", [discrete] if discrete else [], "discrete"),
    ):
        if any(v != member for v in value):
            raise ValueError(
                f"{path} is in the library's recordings layout, whose sessions hold 'neural', 'continuous' and "
                f"'discrete'; {argument}={value if len(value) > 1 else value[0]!r} must be {member!r}"
            )
    if segments is not None:
        raise ValueError(
            f"{path} is in the library's recordings layout, which stores no segments; segments must be None"
        )
    recording = load_recording(path, session, in_memory=in_memory)
    if continuous and recording.continuous is None:
        raise ValueError(f"{path}: session {recording.name!r} has no 'continuous' dataset")
    if discrete and recording.discrete is None:
        raise ValueError(f"{path}: session {recording.name!r} has no 'discrete' dataset")
    return Recording(
        recording.neural,
        recording.continuous if continuous else None,
        recording.discrete if discrete else None,
        name=recording.name,
    )
