"""Rows of arrays kept on disk in an uncompressed ``.npz`` file, read with ``os.pread`` when asked for.

An index of a large set (where each image's bytes lie, each caption, each
caption's token ids) grows with the set: 10⁶ pairs are ~150 MB, 10⁸ pairs
15 GB. Kept on disk and read row by row, it costs the process nothing that
depends on the set's size. Memory-mapping would read the same bytes, but every
page a random batch touches would stay mapped into the process (and count in
its resident memory, growing over a run); ``os.pread`` copies just the rows
asked for into a fresh buffer, and the file's pages stay in the kernel's page
cache, shared by every process and given back when memory runs short.

``np.savez`` stores each array uncompressed as a ``.npy`` member of a zip
archive: :class:`NpzColumn` finds where a member's data start and reads rows at
``start + row * row_bytes``. Files are opened on first read and kept open,
at most :data:`MAX_OPEN_FILES` at a time per process (the least recently read
closed first: 10⁴ shards with their index and token files would otherwise
pass the usual limit of open files); a process forked after that shares the
descriptors (``pread`` moves no shared position), a pickled copy (a spawned
worker) opens its own.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

#: a zip local file header: 30 bytes, then the member's name and an extra field
LOCAL_HEADER = struct.Struct("<4s22xHH")
#: files kept open at once by :func:`read_at` in one process
MAX_OPEN_FILES = 256

#: what identifies one version of a file: device, inode, size, modification time
FileVersion = tuple[int, int, int, int]

_open_files: OrderedDict[tuple[Path, FileVersion], int] = OrderedDict()  # least recently read first
_open_files_lock = threading.Lock()
os.register_at_fork(after_in_child=lambda: globals().update(_open_files_lock=threading.Lock()))


def file_version(status: os.stat_result) -> FileVersion:
    """The :data:`FileVersion` of a file from its ``os.stat`` / ``os.fstat``."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def read_at(path: Path, version: FileVersion, size: int, offset: int) -> bytes:
    """``size`` bytes of file ``path`` from ``offset`` (fewer at its end), read with ``os.pread``
    through a descriptor kept open for the next read (see the module docstring).

    ``version`` is the file's :func:`file_version` when its layout was read: a file replaced since
    (a rebuilt cache, a rewritten shard) is another version, opened afresh, and refused.

    Raises:
        ValueError: naming the file, when it is no longer the version ``version``.
    """
    with _open_files_lock:  # a descriptor is never closed by one thread while another reads through it
        descriptor = _open_files.pop((path, version), None)
        if descriptor is None:
            if len(_open_files) >= MAX_OPEN_FILES:
                os.close(_open_files.popitem(last=False)[1])
            descriptor = os.open(path, os.O_RDONLY)
            if file_version(os.fstat(descriptor)) != version:
                os.close(descriptor)
                raise ValueError(f"{path} changed after it was indexed; build the dataset again to read it")
        _open_files[path, version] = descriptor
        return os.pread(descriptor, size, offset)


class NpzColumn:
    """One array of an uncompressed ``.npz`` file, read by rows (along its first dimension) without loading it.

    Args:
        path: the ``.npz`` file (as ``np.savez`` writes it).
        name: the array's name in it.

    Attributes:
        shape, dtype: the array's.
        version: the file's :func:`file_version` when its layout was read (a later version is refused).

    Raises:
        KeyError: the file has no array ``name``.
        ValueError: naming the file, when the member is compressed, Fortran-ordered or holds Python objects.
    """

    def __init__(self, path: str | os.PathLike, name: str):
        self.path, self.name = Path(path), name
        with zipfile.ZipFile(self.path) as archive:
            member = archive.getinfo(f"{name}.npy")
        if member.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{self.path}: array {name!r} is compressed; write the file with np.savez, not savez_compressed")
        with self.path.open("rb") as file:
            self.version = file_version(os.fstat(file.fileno()))
            file.seek(member.header_offset)
            signature, name_length, extra_length = LOCAL_HEADER.unpack(file.read(LOCAL_HEADER.size))
            if signature != b"PK\x03\x04":
                raise ValueError(f"{self.path}: array {name!r} has no zip local header where the directory says")
            file.seek(member.header_offset + LOCAL_HEADER.size + name_length + extra_length)
            version = np.lib.format.read_magic(file)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(file)
            self._data_start = file.tell()
        if fortran_order or dtype.hasobject:
            raise ValueError(f"{self.path}: array {name!r} must be C-ordered plain numbers to be read by rows")
        self.shape, self.dtype = tuple(shape), dtype
        self._row_bytes = dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self._row_bytes
        data = read_at(self.path, self.version, size, self._data_start + start * self._row_bytes)
        if len(data) != size:
            raise ValueError(f"{self.path}: array {self.name!r} ends early (the file was cut or changed while in use)")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.shape[1:])

    def span(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``: ``(stop - start, *shape[1:])``, one read."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"rows [{start}, {stop}) outside {self.name!r}'s {len(self)} rows")
        return self._read(start, stop)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows (k,)`` in that order: ``(k, *shape[1:])``, one read each."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows from {rows.min()} to {rows.max()} outside {self.name!r}'s {len(self)} rows")
        taken = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        for position, row in enumerate(rows.tolist()):
            taken[position] = self._read(row, row + 1)[0]
        return taken


class NpzRagged:
    """Rows of different lengths stored end to end in an ``.npz`` file: ``values`` ``(total,)`` and
    ``ends`` ``(n,)`` int64, where row ``i`` is ``values[ends[i - 1]:ends[i]]`` (texts as UTF-8 bytes,
    token ids), read row by row (two reads a row).

    Args:
        path: the ``.npz`` file.
        name: the rows' name: the arrays ``{name}_values`` and ``{name}_ends``.
    """

    def __init__(self, path: str | os.PathLike, name: str):
        self.values, self.ends = NpzColumn(path, f"{name}_values"), NpzColumn(path, f"{name}_ends")

    def __len__(self) -> int:
        return len(self.ends)

    def row(self, i: int) -> np.ndarray:
        """Row ``i``: ``(length,)`` of the values' dtype."""
        bounds = self.ends.span(i - 1, i + 1) if i > 0 else np.concatenate([[0], self.ends.span(0, 1)])
        return self.values.span(int(bounds[0]), int(bounds[1]))

    def text(self, i: int) -> str:
        """Row ``i`` decoded as UTF-8 text."""
        return self.row(i).tobytes().decode("utf-8")


def ragged_arrays(name: str, rows: list[np.ndarray] | list[bytes], dtype: np.dtype | type) -> dict[str, np.ndarray]:
    """``{name}_values`` and ``{name}_ends`` of ``rows`` (arrays, or bytes read as ``uint8``), to save
    with ``np.savez`` and read back with :class:`NpzRagged`."""
    arrays = [np.frombuffer(row, dtype=np.uint8) if isinstance(row, bytes) else np.asarray(row) for row in rows]
    ends = np.cumsum([len(array) for array in arrays], dtype=np.int64)
    values = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)
    return {f"{name}_values": values, f"{name}_ends": ends}
