"""MoCo's queue of keys (He et al. 2020): a first-in first-out buffer of past momentum-encoder outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.memory import available_memory, readable_bytes


class KeyQueue(nn.Module):
    """A ring buffer of ``size`` keys of dimension ``dim``; each step enqueues one batch of keys.

    Keys of a batch of B rows are written contiguously at ``pointer``, which
    then advances by B. As in MoCo, ``size`` must be a multiple of B, so the
    queue always holds exactly the keys of the last ``size / B`` batches (after
    ``size / B`` steps; before that, some of its random initial keys).

    The buffers ``keys (size, dim)`` (random unit vectors at first) and
    ``pointer`` are saved in checkpoints.

    Args:
        size: number of keys K (>= 1).
        dim: key dimension d (>= 1).
        setting: the method's argument that sets ``size``, named in errors and warnings.
    """

    keys: torch.Tensor
    pointer: torch.Tensor

    def __init__(self, size: int, dim: int, setting: str = "queue_size"):
        super().__init__()
        self.setting = setting
        for name, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.size = size
        needed, free = 4 * size * dim, available_memory(torch.device("cpu"))  # float32 keys, built on the host
        if free is not None and needed > free:
            raise ValueError(
                f"{setting}={size:,} keys of dim {dim} take {readable_bytes(needed)}, more than the "
                f"{readable_bytes(free)} free: use a {setting} below {free // (4 * dim):,}"
            )
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def check_batch(self, rows: int) -> None:
        """Raise ``ValueError`` unless a batch of ``rows`` keys fits the queue (``size`` a multiple of ``rows``)."""
        if rows < 1 or self.size % rows:
            raise ValueError(
                f"queue_size={self.size} must be a multiple of the {rows} keys enqueued per step "
                "(MoCo: per-rank batch x world size, x 2 when symmetric)"
            )

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``B`` keys by ``keys (B, dim)`` and advance the pointer by B (mod size)."""
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"keys must have shape (B, {self.keys.shape[1]}), got {tuple(keys.shape)}")
        rows = keys.shape[0]
        self.check_batch(rows)
        start = int(self.pointer)
        self.keys[start : start + rows] = keys.detach().to(self.keys.dtype)
        self.pointer.fill_((start + rows) % self.size)
