"""The files ``export`` and ``embed`` read and write, checked and handled without torch.

``contrastive-seq evaluate``, ``export`` and ``embed`` check every path they
are given (a run folder, the data, the output) before torch is imported, so a
typo answers in a fraction of a second with one line naming the argument.
The checks raise :class:`~contrastive_seq.config.ConfigError`, whose message
names the argument as the caller calls it (``--output`` on the command line,
``path`` in Python). The arrays ``embed`` reads and the embeddings it writes
are handled here too, with NumPy (and h5py for HDF5 output).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.config import ConfigError

EXPORT_SUFFIXES = (".pt", ".pth")  # torch's checkpoint format, weights only
ARRAY_SUFFIXES = (".npy", ".npz")
EMBEDDING_SUFFIXES = (".npy", ".h5", ".hdf5")
FRAMES_SUFFIXES = (".h5", ".hdf5")
FRAMES_REASON = "per-file frames are written to HDF5: datasets embedding, lengths and files"


def _either(suffixes: Sequence[str]) -> str:
    return " or ".join(", ".join(suffixes).rsplit(", ", 1))


def check_output_path(
    path: str | os.PathLike, suffixes: Sequence[str], argument: str, folder_must_exist: bool = True, why: str = ""
) -> Path:
    """``path`` as a file to write: it ends in one of ``suffixes`` (``why`` says why, when not obvious), is
    not a directory and (with ``folder_must_exist``) its folder exists. Raises :class:`ConfigError` naming ``argument``."""
    path = Path(path)
    if path.suffix not in suffixes:
        raise ConfigError(f"{argument} {path} must end in {_either(suffixes)}{why and f' ({why})'}")
    if path.is_dir():
        raise ConfigError(f"{argument} {path} is a directory; a file name ending in {_either(suffixes)} was expected")
    if folder_must_exist and not path.absolute().parent.is_dir():
        raise ConfigError(f"{argument} {path}: the folder {path.absolute().parent} does not exist")
    return path


def check_input_path(path: str | os.PathLike, argument: str) -> Path:
    """``path`` when a file or folder is there; else :class:`ConfigError` naming ``argument``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{argument} {path}: no such file or folder")
    return path


def check_array_path(path: str | os.PathLike, argument: str) -> Path:
    """``path`` when it is a ``.npy`` or ``.npz`` file; else :class:`ConfigError` naming ``argument``."""
    path = check_input_path(path, argument)
    if path.suffix not in ARRAY_SUFFIXES or not path.is_file():
        raise ConfigError(f"{argument} {path}: expected a .npy or .npz array file (or the run's 'train' / 'test' data)")
    return path


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """An array from ``.npy`` (memory-mapped: read as it goes) or ``.npz`` (``key``, or its only array)."""
    path = check_array_path(path, "data")
    if path.suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path} is not a readable .npy array: {error}") from error
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if key is None and len(names) != 1:
            raise ValueError(f"{path} holds arrays {names}: choose one with --key")
        name = key if key is not None else names[0]
        if name not in names:
            raise ValueError(f"{path} has no array {name!r}; it holds {names}")
        return archive[name]


def _npy_header(shape: tuple[int, ...]) -> bytes:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    with tempfile.TemporaryFile() as file:
        np.lib.format.write_array_header_1_0(file, header)
        file.seek(0)
        return file.read()


def write_embedding(
    blocks: Iterator[np.ndarray], path: str | os.PathLike, block_names: Sequence[str] | None = None
) -> tuple[int, int]:
    """Write ``(rows, dim)`` blocks as one array to ``.npy`` or to dataset ``embedding`` of an ``.h5`` / ``.hdf5`` file.

    Blocks are written as they come (memory: one block); the file appears
    whole or not at all. With ``block_names`` (one per block: each file's
    frames), the HDF5 file also holds ``lengths (blocks,)`` (rows of each
    block, in order) and ``files (blocks,)`` (the names). Returns the array's shape.
    """
    if block_names is None:
        path = check_output_path(path, EMBEDDING_SUFFIXES, "output")
    else:
        path = check_output_path(path, FRAMES_SUFFIXES, "output", why=FRAMES_REASON)
    lengths = []
    with tempfile.TemporaryFile(dir=path.parent) as spool:
        rows, dim = 0, None
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32)
            if block.ndim != 2 or (dim is not None and block.shape[1] != dim):
                raise ValueError(f"embedding blocks must be (rows, {dim or 'dim'}), got {block.shape}")
            dim = block.shape[1]
            rows += len(block)
            lengths.append(len(block))
            spool.write(block.tobytes())
        if dim is None:
            raise ValueError("nothing to embed: the data has no rows")
        spool.seek(0)
        if path.suffix == ".npy":
            def fill(file):
                file.write(_npy_header((rows, dim)))
                while chunk := spool.read(1 << 24):
                    file.write(chunk)
        else:
            import h5py

            def fill(file):
                with h5py.File(file, "w") as out:
                    data = out.create_dataset("embedding", (rows, dim), dtype="float32")
                    step = max(1, (1 << 24) // (4 * dim))
                    for start in range(0, rows, step):
                        count = min(step, rows - start)
                        data[start : start + count] = np.frombuffer(spool.read(4 * dim * count), np.float32).reshape(count, dim)
                    if block_names is not None:
                        out.create_dataset("lengths", data=np.array(lengths, dtype=np.int64))
                        out.create_dataset("files", data=[str(name) for name in block_names], dtype=h5py.string_dtype())
        write_atomically(path, fill)
    return rows, dim
