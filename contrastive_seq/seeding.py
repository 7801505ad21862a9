"""Deterministic seeds for every random stream, derived from one base seed."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on all ``keys`` (e.g. base seed, step, rank).

    Uses NumPy's SeedSequence hashing, so nearby keys give unrelated seeds.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator_for(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``keys``."""
    return torch.Generator().manual_seed(derive_seed(*keys))
