"""Freed heap memory goes back to the system before DataLoader workers fork (glibc's malloc_trim)."""

from pathlib import Path

import numpy as np
import pytest

from contrastive_seq.memory import release_freed_memory


def resident_mib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_blocks_freed_between_kept_ones_leave_the_resident_memory_once_released():
    """3,000 blocks of 64 KiB (188 MiB, under glibc's mmap threshold, so they live in the heap) with a small
    array kept after each: freeing the blocks alone leaves the heap's pages resident until it is trimmed."""
    kept, blocks = [], []
    for _ in range(3000):
        blocks.append(np.ones(8192))
        kept.append(np.ones(10))
    del blocks
    before = resident_mib()
    if not release_freed_memory():
        pytest.skip("the C library has no malloc_trim (not glibc)")
    assert before - resident_mib() > 0.5 * 3000 * 64 / 1024  # more than half of the 188 MiB came back
    assert len(kept) == 3000
