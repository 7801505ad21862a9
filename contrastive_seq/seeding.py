"""Every random stream: seeds derived from one base seed; the global streams seeded, saved and restored.

Two kinds of randomness meet here. Samplers and views draw from explicit
``torch.Generator`` objects seeded by :func:`derive_seed` / :func:`generator_for`.
Everything else (weight initialisation, dropout, torchvision's transforms,
NumPy or ``random`` inside user code) draws from the *global* streams:
Python's ``random``, NumPy's legacy global ``RandomState``, torch's CPU
generator and, once CUDA is initialised, the current CUDA device's generator.
This module is the one place that touches those global streams:

- :func:`seed_everything` seeds them all from one int;
- :func:`capture_random_state` / :func:`restore_random_state` save and restore
  them as tensors and plain values (what a checkpoint holds, so that a resumed
  run continues bitwise where it stopped);
- :func:`forked_random_state` runs a block with them saved on entry (and
  optionally seeded) and restored on exit, so the block's draws leave the
  caller's streams as they were.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator (``seed mod 2**32``) and torch (CPU and CUDA) with ``seed``.

    ``seed`` is an int in ``[0, 2**63)``, what ``torch.manual_seed`` accepts.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_random_state() -> dict[str, Any]:
    """Every global random stream as tensors and plain values (``torch.load(weights_only=True)`` reads them back).

    Keys: ``"torch"`` (CPU generator, uint8 tensor), ``"numpy"`` (legacy global
    ``RandomState``: ``algorithm``, ``keys`` (624,) int64, ``position``,
    ``has_gauss``, ``cached_gaussian``), ``"python"`` (``random`` module:
    ``version``, ``internal`` (625,) int64, ``gauss_next``) and, once CUDA is
    initialised, ``"cuda"`` (the current device's generator). Checkpoints keep
    this dict as it is, so its keys are a file format.
    """
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "algorithm": str(algorithm),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_random_state(state: Mapping[str, Any]) -> None:
    """Restore the streams :func:`capture_random_state` captured (``"cuda"`` when present and CUDA is available)."""
    torch.set_rng_state(state["torch"].cpu())
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["algorithm"],
            saved["keys"].cpu().numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    saved = state["python"]
    random.setstate((saved["version"], tuple(saved["internal"].tolist()), saved["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


@contextmanager
def forked_random_state(seed: int | None = None) -> Iterator[None]:
    """Run the ``with`` block on its own global random streams: captured on entry, restored on exit.

    With ``seed``, the block starts from :func:`seed_everything` of it, so
    its draws depend on ``seed`` alone; without, it starts from the caller's
    streams (its draws are the caller's next ones, then undone).
    """
    saved = capture_random_state()
    try:
        if seed is not None:
            seed_everything(seed)
        yield
    finally:
        restore_random_state(saved)
