"""Augmentation views: the positive of a sample is another view of itself (SimCLR, BYOL, DINO)."""

from __future__ import annotations

import torch

from contrastive_seq.sampling.base import PairIndex, Sampler


class AugmentationSampler(Sampler):
    """Uniform references; each has ``n_views - 1`` positives that are the same index.

    Args:
        num_items: dataset size n.
        n_views: views per sample (>= 2); the views step augments each one.
        replacement: draw with replacement (else a batch never repeats a sample,
            which in-batch negatives need: a repeated sample would be its own negative).
    """

    def __init__(self, num_items: int, n_views: int = 2, replacement: bool = False):
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 2:
            raise ValueError(f"n_views must be an int >= 2, got {n_views!r}")
        self.num_items = num_items
        self.n_views = n_views
        self.replacement = replacement

    @property
    def max_batch_size(self) -> int | None:  # noqa: D102
        return None if self.replacement else self.num_items

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        if self.replacement:
            reference = torch.randint(self.num_items, (batch_size,), generator=generator)
        elif batch_size > self.num_items:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {self.num_items} samples available without replacement"
            )
        elif batch_size * 4 <= self.num_items:
            reference = _distinct_by_rejection(self.num_items, batch_size, generator)
        else:
            reference = torch.randperm(self.num_items, generator=generator)[:batch_size]
        positive = reference.unsqueeze(1).expand(-1, self.n_views - 1)
        return PairIndex(reference=reference, positive=positive)


def _distinct_by_rejection(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct indices from ``range(n)`` in O(k log k) expected, for k <= n / 4."""
    chosen = torch.empty(0, dtype=torch.long)
    while chosen.numel() < k:
        draw = torch.randint(n, (2 * (k - chosen.numel()),), generator=generator)
        merged = torch.cat([chosen, draw])
        chosen = merged[_first_occurrences(merged)]
    return chosen[:k]


def _first_occurrences(values: torch.Tensor) -> torch.Tensor:
    """Sorted positions of each distinct value's first occurrence (keeps the draw order)."""
    unique, inverse = torch.unique(values, return_inverse=True)
    positions = torch.arange(values.numel())
    first = torch.full((unique.numel(),), values.numel(), dtype=torch.long).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    return first.sort().values
