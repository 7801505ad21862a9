"""How much memory this process may still take: read before allocating something large, so that a size
that cannot fit is refused with an error naming its setting instead of growing until the process is killed."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


def available_memory(device: torch.device) -> int | None:
    """Bytes free for this process on ``device``: CUDA's free memory, or the host's MemAvailable, capped by a
    cgroup (v2) memory limit; ``None`` when it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            free = min(free, int(limit) - used) if free is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return free


def readable_bytes(size: float) -> str:
    """``size`` bytes in decimal units with three significant digits, e.g. ``"56 GB"``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    library = ctypes.CDLL(name) if name else None
    return getattr(library, "malloc_trim", None)


def release_freed_memory() -> bool:
    """Hand the heap memory this process has freed back to the system (glibc's ``malloc_trim(0)``).

    Building a large dataset leaves freed blocks in the heap (the Python lists
    of tokenising a million captions, the per-shard arrays before they are
    joined) that glibc keeps for reuse: they still count in the process's
    resident memory, and in every DataLoader worker forked from it. Called
    before the workers are forked. Returns whether anything could be asked of
    the C library (``False`` off glibc, where it does nothing).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@contextlib.contextmanager
def workers_share_memory() -> Iterator[None]:
    """While inside, DataLoader workers forked from this process share its memory instead of copying it.

    On entering:

    - garbage is collected, then every object left is moved out of the cyclic
      collector's reach (``gc.freeze()``): a forked worker's collector
      otherwise writes into the header of every object this process made (the
      modules of torch, torchvision, open_clip, the dataset's objects) when it
      runs a full collection, so every page holding one is copied into the
      worker: about 100 MiB a worker, at a step that varies from run to run;
    - the heap memory this process has freed goes back to the system
      (:func:`release_freed_memory`).

    On leaving (the workers are gone), the objects are handed back to the
    collector (``gc.unfreeze()``), so cycles made unreachable since are freed.
    A program that has frozen objects itself keeps managing them: then
    nothing is frozen or unfrozen here.
    """
    frozen_by_caller = gc.get_freeze_count() > 0
    gc.collect()
    if not frozen_by_caller:
        gc.freeze()
    release_freed_memory()
    try:
        yield
    finally:
        if not frozen_by_caller:
            gc.unfreeze()
