"""Batches by step number: sampler -> views, reproducible from (seed, step) alone."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.seeding import generator_for
from contrastive_seq.views.base import Views


class SampledBatches(Dataset):
    """A map-style dataset whose item ``step`` is that step's batch for this rank.

    Every rank draws the same global batch of ``batch_size * world_size`` pairs
    from a generator seeded by ``(seed, step)`` and keeps its own shard, so a
    run on W ranks sees exactly the batches of one process with W times the
    batch. Views are seeded by ``(seed, step, rank)``. Because a batch depends
    on nothing but its step, resuming needs no sampler state and any number of
    DataLoader workers gives the same batches.

    Args:
        dataset: what the views index into.
        sampler: draws the pairs.
        views: builds the inputs.
        batch_size: pairs per rank and step.
        num_steps: length (steps in the run).
        seed: base seed.
        rank, world_size: this process's place in the run.
    """

    def __init__(
        self,
        dataset: object,
        sampler: Sampler,
        views: Views,
        batch_size: int,
        num_steps: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.sampler = sampler
        self.views = views
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return self.num_steps

    def pairs(self, step: int) -> PairIndex:
        """This rank's pairs of step ``step`` (its shard of the global batch)."""
        pairs = self.sampler.sample(self.batch_size * self.world_size, generator_for(self.seed, step))
        return pairs.shard(self.rank, self.world_size)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.views(self.dataset, self.pairs(step), generator_for(self.seed, step, self.rank))
