"""Training metrics as JSON lines, mirrored to TensorBoard when it is installed.

A record is one logged step: ``{"step": 100, "loss": 2.31, "parts": {...},
"lr": 0.001, "samples_per_s": 5120.0}``, plus ``"eval": {...}`` at steps
where the evaluation callback ran. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from contrastive_seq import distributed
from contrastive_seq.atomic_files import write_atomically


def _step_of(line: str) -> int | None:
    """The int ``"step"`` of a JSON-lines record, ``None`` for a torn or foreign line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _unused_rotation(path: Path) -> Path:
    """``path.1``, or the first of ``path.2``, ``path.3``, ... that does not exist."""
    number = 1
    while path.with_name(f"{path.name}.{number}").exists():
        number += 1
    return path.with_name(f"{path.name}.{number}")


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with ``/``-joined keys: ``{"parts": {"acc": 1.0}} -> {"parts/acc": 1.0}``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None``, so the line is strict JSON."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends one JSON object per logged step to ``path`` and to TensorBoard.

    TensorBoard's ``SummaryWriter`` (under ``path``'s directory, in
    ``tensorboard/``) is used when the ``tensorboard`` package is importable,
    with tags from :func:`flatten` (``loss``, ``parts/accuracy``, ``eval/knn``);
    without it only the JSON-lines file is written.

    The file is only ever appended to or rotated, never truncated: a new
    run (``resume_step=0``) that finds records there, or a resumed run that
    finds records of steps after its checkpoint (or a torn last line), first
    renames the file to ``metrics.jsonl.1`` (``.2``, ... when taken) and, when
    resuming, starts the new file with the records up to ``resume_step``.

    Args:
        path: the JSON-lines file (its directory is created).
        enabled: write at all; ``None`` means "this process is rank 0".
        resume_step: records of steps ``<= resume_step`` already in the file
            are kept and later ones (logged after the checkpoint a run resumes
            from) are left in the rotated file, so every step appears once; ``0`` starts a new file.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool | None = None, resume_step: int = 0):
        self.path = Path(path)
        self.enabled = distributed.rank() == 0 if enabled is None else enabled
        self._file = None
        self._tensorboard = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._keep_records_until(resume_step)
        self._file = self.path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self._tensorboard = SummaryWriter(
            log_dir=str(self.path.parent / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def _keep_records_until(self, step: int) -> None:
        """Leave in the file exactly the records of steps ``<= step``: as it is when it holds no others, else rotated."""
        if not self.path.is_file():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if (number := _step_of(line)) is not None and number <= step]
        if kept == lines and (not text or text.endswith("\n")):
            return
        rotated = _unused_rotation(self.path)
        os.replace(self.path, rotated)
        if kept:
            write_atomically(self.path, lambda file: file.write("".join(kept).encode("utf-8")))

    def write(self, record: Mapping[str, Any]) -> None:
        """Log one step's record; it must hold an int ``"step"`` and numbers (or nested dicts of them)."""
        if not self.enabled:
            return
        step = record["step"]
        self._file.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for tag, value in flatten(record).items():
                if tag != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(tag, value, global_step=step)
            self._tensorboard.flush()

    def close(self) -> None:
        """Close the file and the TensorBoard writer (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
