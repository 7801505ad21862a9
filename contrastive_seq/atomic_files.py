"""Files replaced whole or not at all: checkpoints, HDF5 data files, results.

A writer fills a temporary file beside the target, which is flushed, fsynced
and renamed over it (``os.replace``), so a crash, a kill or a full disk
leaves the target's previous content, never part of a new one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO


def write_atomically(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], before_replace: Callable[[], object] | None = None
) -> Path:
    """Create or replace ``path`` whole: ``write(file)`` fills a temporary file beside it, then a rename.

    ``file`` is opened for binary reading and writing (``w+b``; h5py needs
    both). The temporary file is flushed and fsynced before ``os.replace``
    puts it at ``path``; if ``write`` or the rename fails it is removed and
    ``path`` keeps its previous content. The new file gets the permissions
    of the one it replaces, or those ``open`` would give a new file (``0o666``
    less the umask): readable by the group and others as usual, not only
    by its owner as a bare temporary file is. After success, temporary files for
    ``path`` left by writers killed mid-write are deleted. ``before_replace``,
    when given, runs after the new content is durable and just before the
    rename (a checkpoint moves the previous file aside there).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, _permissions_for(path))
        with os.fdopen(descriptor, "w+b") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if before_replace is not None:
            before_replace()
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


def _permissions_for(path: Path) -> int:
    """The permission bits of the file at ``path``, or, when there is none, those a new file gets (0o666 less the umask)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it: put it back at once
        os.umask(umask)
        return 0o666 & ~umask


def check_output_dir(directory: Path, names: Sequence[str]) -> None:
    """Check, before anything is written, that ``directory`` can hold the files ``names``.

    ``directory`` must be a directory or not exist yet (then its nearest
    existing ancestor must be a writable directory), and each existing
    ``directory / name`` must be a regular file, which a writer can replace.

    Raises:
        NotADirectoryError: naming ``directory`` (or the ancestor) when it is a file.
        IsADirectoryError: naming ``directory / name`` when it is not a regular file.
        PermissionError: naming the directory that cannot be written to.
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"output directory {directory}: {existing} is a file, expected a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory {directory}: {existing} is not writable")
    for name in names:
        path = directory / name
        if path.exists() and not path.is_file():
            raise IsADirectoryError(
                f"{path} is not a regular file (a directory?); the run writes its {name} there: "
                "move it away or choose another output directory"
            )


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows opening a directory (POSIX)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
