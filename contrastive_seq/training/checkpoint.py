"""Checkpoints written atomically, carrying a checksum, and read without running code.

A checkpoint is a dict of tensors and plain Python containers (dict, list,
tuple, str, int, float, bool, None), so ``torch.load(weights_only=True)``
reads it. :func:`~contrastive_seq.seeding.capture_random_state` turns every
global random stream into that form.

The file is the zip archive ``torch.save`` writes, with the SHA-256 of every
byte before it stored as the archive's comment (the last bytes of the file):
``torch.load`` still reads it, and :func:`load_checkpoint` refuses any file
whose bytes (zip headers, pickled metadata, tensor data) or checksum changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.training.errors import CheckpointError
from contrastive_seq.user_warnings import warn_at_caller

CHECKSUM_PREFIX = b"contrastive_seq sha256 "
_END_OF_ARCHIVE = b"PK\x05\x06"  # signature of the zip end-of-central-directory record
_END_RECORD_SIZE = 22  # that record without its comment; its last two bytes are the comment's length
_COMMENT_SIZE = len(CHECKSUM_PREFIX) + 64  # the prefix and the hex digest
_CHUNK = 1 << 20


def _write_with_checksum(file: BinaryIO, state: Mapping[str, Any]) -> None:
    """``torch.save(state)`` into ``file``, then the SHA-256 of all its bytes as the zip archive's comment."""
    torch.save(dict(state), file)
    size = file.tell()
    file.seek(size - _END_RECORD_SIZE)
    record = file.read(_END_RECORD_SIZE)
    if record[:4] != _END_OF_ARCHIVE or record[-2:] != b"\x00\x00":
        raise CheckpointError("torch.save did not end its archive with a plain end-of-central-directory record")
    digest = hashlib.sha256()
    file.seek(0)
    remaining = size - 2
    while remaining:
        chunk = file.read(min(_CHUNK, remaining))
        digest.update(chunk)
        remaining -= len(chunk)
    length = struct.pack("<H", _COMMENT_SIZE)
    digest.update(length)
    file.seek(size - 2)
    file.write(length + CHECKSUM_PREFIX + digest.hexdigest().encode("ascii"))


def _verify_checksum(path: Path, data: bytes) -> None:
    """Check that ``data`` (the bytes of ``path``) ends with the checksum of everything before it.

    Raises:
        CheckpointError: naming ``path`` when there is no checksum or it does not match.
    """
    comment_start = len(data) - _COMMENT_SIZE
    record_start = comment_start - _END_RECORD_SIZE
    record = data[record_start:comment_start] if record_start >= 0 else b""
    comment = data[comment_start:] if comment_start >= 0 else b""
    if (
        record[:4] != _END_OF_ARCHIVE
        or record[-2:] != struct.pack("<H", _COMMENT_SIZE)
        or not comment.startswith(CHECKSUM_PREFIX)
    ):
        raise CheckpointError(
            f"checkpoint {path} carries no checksum at its end: it is damaged, truncated, or was not written "
            "by contrastive_seq's save_checkpoint"
        )
    stored = comment[len(CHECKSUM_PREFIX) :]
    actual = hashlib.sha256(memoryview(data)[:comment_start]).hexdigest().encode("ascii")
    if stored != actual:
        raise CheckpointError(
            f"checkpoint {path} is damaged: the SHA-256 of its content does not match the checksum it was written "
            "with (bytes changed on disk or in transfer); it is not loaded"
        )


def save_checkpoint(
    path: str | os.PathLike, state: Mapping[str, Any], keep_previous: str | os.PathLike | None = None
) -> None:
    """Write ``state`` to ``path`` atomically, with a SHA-256 checksum of the file's content.

    With ``keep_previous``, a checkpoint already at ``path`` is first renamed
    to ``keep_previous`` (replacing the one there), so the last two
    checkpoints are kept; a crash between that rename and the new file's
    rename leaves the older one at ``keep_previous`` only.

    The state goes to a temporary file in the same directory, which is flushed,
    fsynced and then renamed over ``path`` (``os.replace``), so ``path`` always
    holds either the previous checkpoint or the complete new one. On any
    failure the temporary file is removed and the previous checkpoint is left
    as it was. After a successful write, temporary files for ``path`` that a
    killed writer left behind are deleted. The directory is created when missing.

    Raises:
        OSError: naming ``path`` when writing fails (disk full, no permission).
        CheckpointError: naming ``path`` when ``torch.save`` fails otherwise
            (an object that cannot be pickled, a write error torch reports itself).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: _write_with_checksum(file, state), before_replace=_rotation(path, keep_previous))
    except OSError as exc:
        message = f"could not save checkpoint {path} ({exc.strerror or exc}); any previous checkpoint there is intact"
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
    except Exception as exc:
        raise CheckpointError(
            f"could not save checkpoint {path} ({type(exc).__name__}: {exc}); any previous checkpoint there is intact"
        ) from exc


def _rotation(path: Path, previous: str | os.PathLike | None) -> Callable[[], None] | None:
    """What :func:`write_atomically` does before its rename: move the checkpoint at ``path`` to ``previous``."""
    if previous is None:
        return None

    def rotate() -> None:
        if path.is_file():
            os.replace(path, previous)

    return rotate


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: checksum verified, then ``torch.load(weights_only=True)``.

    The file is read into memory once; its SHA-256 is compared with the one
    stored at its end before anything is unpickled. Tensors are mapped to ``map_location`` (CPU by default; ``load_state_dict``
    moves them to the parameters' device).

    Raises:
        FileNotFoundError: naming ``path`` when there is no file.
        CheckpointError: naming ``path`` when the file is not a regular file,
            lacks its checksum or does not match it (damaged, truncated), holds
            objects that weights-only loading refuses, or is not a dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file (a directory?); expected a checkpoint file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} could not be read ({exc.strerror or exc})") from exc
    _verify_checksum(path, data)
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {path} could not be loaded: it is corrupt, truncated, or holds objects that "
            f"weights-only loading refuses ({type(exc).__name__}: {reason})"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def previous_checkpoint_path(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` -> ``checkpoint.previous.pt``."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def load_latest_checkpoint(path: Path, previous: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint of ``path`` and ``previous``, as ``(its path, its state)``; ``None`` when neither exists.

    When ``path`` is damaged (or missing, after a crash between the two renames
    of a save) and ``previous`` is intact, warns and returns ``previous``.

    Raises:
        CheckpointError: naming the files, when ``path`` is damaged and there
            is no intact ``previous``: a damaged checkpoint is never loaded.
    """
    if not path.exists() and not previous.exists():
        return None
    damage = None
    if path.exists():
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            damage = exc
    try:
        state = load_checkpoint(previous)
    except (CheckpointError, FileNotFoundError) as exc:
        if damage is None:
            raise
        raise CheckpointError(f"{damage}; the previous checkpoint cannot be used either: {exc}") from damage
    why = f"{damage}" if damage is not None else f"there is no {path} (a save was interrupted)"
    warn_at_caller(f"{why}; resuming from the previous checkpoint {previous} instead", RuntimeWarning)
    return previous, state
