"""Same class: the positives of a sample are other samples with its label (SupCon)."""

from __future__ import annotations

import torch

from contrastive_seq.sampling.base import PairIndex, Sampler


class SameClassSampler(Sampler):
    """Uniform references, each with positives drawn uniformly from the other members of its class.

    The batch carries the references' labels, so a loss can also treat every
    pair of references with one label as positives (SupCon's multi-positive mask).
    A class with a single member can only pair a sample with itself; such
    classes are refused unless ``allow_singletons``.

    Args:
        labels: ``(n,)`` integer class of each sample.
        positives_per_reference: P positives per reference.
        allow_singletons: accept classes of one member (their positive is the sample itself).

    Setup sorts the labels once (O(n log n)); a draw costs O(batch).
    """

    def __init__(self, labels: torch.Tensor, positives_per_reference: int = 1, allow_singletons: bool = False):
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.numel() == 0:
            raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"labels must hold integer classes, got dtype {labels.dtype}")
        if isinstance(positives_per_reference, bool) or not isinstance(positives_per_reference, int) or (
            positives_per_reference < 1
        ):
            raise ValueError(f"positives_per_reference must be a positive int, got {positives_per_reference!r}")
        self.labels = labels.long()
        self.num_items = labels.numel()
        self.positives_per_reference = positives_per_reference
        _, class_of_item, counts = torch.unique(self.labels, return_inverse=True, return_counts=True)
        if not allow_singletons and bool((counts < 2).any()):
            raise ValueError(
                "labels has classes with a single sample, which have no other positive; "
                "pass allow_singletons=True to pair them with themselves"
            )
        self._order = torch.argsort(class_of_item, stable=True)
        self._class_start = torch.cumsum(counts, 0) - counts
        self._class_size = counts[class_of_item]
        self._start_of_item = self._class_start[class_of_item]
        self._rank_in_class = torch.empty_like(self._order)
        self._rank_in_class[self._order] = torch.arange(self.num_items) - self._start_of_item[self._order]

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        reference = torch.randint(self.num_items, (batch_size,), generator=generator)
        positive = self.positives_for(reference, generator)
        return PairIndex(reference=reference, positive=positive, labels=self.labels[reference])

    def positives_for(self, reference: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, P)`` positives, uniform over the other members of each reference's class, for ``reference (N,)``."""
        size = self._class_size[reference].unsqueeze(1)
        others = (size - 1).clamp(min=1)
        offset = (torch.rand(reference.shape[0], self.positives_per_reference, generator=generator) * others).long()
        own_rank = self._rank_in_class[reference].unsqueeze(1)
        offset = torch.where((offset >= own_rank) & (size > 1), offset + 1, offset)
        return self._order[self._start_of_item[reference].unsqueeze(1) + offset]
