"""Files replaced whole or not at all: checkpoints, HDF5 data files, results.

A writer fills a temporary file beside the target, which is flushed, fsynced
and renamed over it (``os.replace``), so a crash, a kill or a full disk
leaves the target's previous content, never part of a new one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace ``path`` whole: ``write(file)`` fills a temporary file beside it, then a rename.

    ``file`` is opened for binary reading and writing (``w+b``; h5py needs
    both). The temporary file is flushed and fsynced before ``os.replace``
    puts it at ``path``; if ``write`` or the rename fails it is removed and
    ``path`` keeps its previous content. After success, temporary files for
    ``path`` left by writers killed mid-write are deleted.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w+b") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # from writers killed mid-write
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows opening a directory (POSIX)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
