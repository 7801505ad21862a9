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
``start + row * row_bytes``. The file is opened on first read; a process
forked after that shares the descriptor (``pread`` moves no shared position),
a pickled copy (a spawned worker) opens its own.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

#: a zip local file header: 30 bytes, then the member's name and an extra field
LOCAL_HEADER = struct.Struct("<4s22xHH")


class NpzColumn:
    """One array of an uncompressed ``.npz`` file, read by rows (along its first dimension) without loading it.

    Args:
        path: the ``.npz`` file (as ``np.savez`` writes it).
        name: the array's name in it.

    Attributes:
        shape, dtype: the array's.

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
        self._descriptor: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        """Pickled without the open file: the copy opens its own."""
        return {**self.__dict__, "_descriptor": None}

    def __del__(self) -> None:
        if getattr(self, "_descriptor", None) is not None:
            os.close(self._descriptor)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._descriptor is None:
            self._descriptor = os.open(self.path, os.O_RDONLY)
        size = (stop - start) * self._row_bytes
        data = os.pread(self._descriptor, size, self._data_start + start * self._row_bytes)
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
