"""Before DataLoader workers fork: freed heap memory goes back to the system (glibc's malloc_trim), and
the garbage collector leaves the parent's objects alone in the children (gc.freeze)."""

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from contrastive_seq.memory import release_freed_memory, workers_share_memory


def resident_mib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_blocks_freed_between_kept_ones_leave_the_resident_memory_once_released():
    """3,000 blocks of 64 KiB (188 MiB, under glibc's mmap threshold, so they live in the heap) with a 1 KiB
    array kept after each: freeing the blocks alone leaves the heap's pages resident until it is trimmed.

    The kept arrays are above pymalloc's 512-byte limit and numpy's small-block cache, so each sits in
    the heap between two blocks: the freed blocks cannot merge into the heap's top, which glibc returns
    by itself (with 80-byte arrays kept, that happened or not depending on which modules the test
    session had imported before)."""
    kept, blocks = [], []
    for _ in range(3000):
        blocks.append(np.ones(8192))
        kept.append(np.ones(128))
    del blocks
    before = resident_mib()
    if not release_freed_memory():
        pytest.skip("the C library has no malloc_trim (not glibc)")
    assert before - resident_mib() > 0.5 * 3000 * 64 / 1024  # more than half of the 188 MiB came back
    assert len(kept) == 3000


def private_after_full_collection_in_a_child() -> float:
    """MiB a forked child holds privately (copied from this process) after one full garbage collection."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        gc.collect()
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
        private = sum(int(line.split()[1]) for line in lines if line.split(":")[0] in ("Private_Clean", "Private_Dirty"))
        os.write(write, str(private).encode())
        os._exit(0)
    os.close(write)
    private = int(os.read(read, 64)) / 1024
    os.close(read)
    os.waitpid(child, 0)
    return private


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads private memory from /proc")
def test_a_worker_forked_after_settling_copies_little_when_its_collector_runs():
    """100,000 small tracked objects (dicts, ~10 MiB) in this process: a child's full collection writes
    into each one's header and copies its page, unless they were frozen before the fork
    (inside ``workers_share_memory``)."""
    objects = [{"row": i} for i in range(100_000)]
    plain = private_after_full_collection_in_a_child()
    with workers_share_memory():
        assert gc.get_freeze_count() >= len(objects)
        settled = private_after_full_collection_in_a_child()
    assert gc.get_freeze_count() == 0  # handed back to the collector on leaving
    assert settled < plain - 5 and len(objects) == 100_000


def test_objects_the_program_froze_itself_stay_frozen():
    """A program that manages gc.freeze() itself (a server forking its own workers) keeps its frozen objects
    frozen after a fit; nothing is unfrozen behind its back."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with workers_share_memory():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
