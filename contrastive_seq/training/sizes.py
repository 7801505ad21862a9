"""Whether a batch fits in memory, decided before the first full batch is drawn.

A batch of ``batch_size`` pairs costs at least what its inputs and indices
take (activations come on top). For batches above :data:`SMALL_BATCH` both
are measured on two probe batches of a few pairs, built by the run's own
sampler and views, and extrapolated along the line through them (what every
batch carries once, such as a whole recording, is not scaled up); a batch that
cannot fit in the memory available on the run's device is refused with an
error naming ``batch_size``, instead of growing until the process is killed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from contrastive_seq.memory import available_memory, readable_bytes
from contrastive_seq.models.queue import KeyQueue
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.user_warnings import warn_at_caller

PROBE_SIZES = (4, 12, 60, 840)  # each a multiple of the ones before: one fits a sampler that needs multiples of k <= 8
SMALL_BATCH = 1024  # batches up to this size are built without an estimate


def _batch_bytes(
    batch_size: int, world_size: int, dataset: object, sampler: Sampler, views: Callable[..., dict], seed: int
) -> tuple[float, float] | None:
    """``(bytes per pair, bytes per batch)`` of inputs and indices, from the two smallest probe batches the sampler accepts.

    Two probes separate what grows with the batch (windows, crops, indices) from
    what every batch carries once whatever its size (a whole recording that the
    model slices its windows from). ``None`` when fewer than two probes fit.
    """
    sizes: list[tuple[int, int]] = []
    for probe in PROBE_SIZES:
        if probe > batch_size or len(sizes) == 2:
            break
        batches = SampledBatches(dataset, sampler, views, probe, num_steps=1, seed=seed)
        try:
            pairs, inputs = batches.pairs(0), batches[0]
        except ValueError:  # e.g. a batch must be a multiple of the number of sessions: try the next size
            continue
        indices = _tensor_bytes([pairs.reference, pairs.positive, pairs.negative])
        sizes.append((probe, _tensor_bytes([inputs]) + indices * world_size))
    if len(sizes) < 2:
        return None
    (small, small_bytes), (large, large_bytes) = sizes
    per_pair = max(0.0, (large_bytes - small_bytes) / (large - small))
    return per_pair, max(0.0, small_bytes - per_pair * small)


def _tensor_bytes(values: Iterable[object]) -> int:
    """Bytes of the tensors among ``values`` and inside the dicts, lists and tuples among them."""
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            total += _tensor_bytes(value.values())
        elif isinstance(value, (list, tuple)):
            total += _tensor_bytes(value)
    return total


def check_batch_fits(
    batch_size: int,
    world_size: int,
    dataset: object,
    sampler: Sampler,
    views: Callable[..., dict[str, torch.Tensor]],
    device: torch.device,
    seed: int = 0,
) -> None:
    """Refuse a ``batch_size`` above :data:`SMALL_BATCH` whose inputs and indices alone exceed the memory free on ``device``.

    The probes are the two smallest of :data:`PROBE_SIZES` that the sampler accepts; when fewer do,
    the sampler's own error comes when the Trainer draws the full batch.

    Args:
        batch_size: pairs per rank and step.
        world_size: ranks; every rank draws the global batch's indices.
        dataset, sampler, views: what the run builds its batches from.
        device: where the batch goes (host memory counts too: batches are built there).
        seed: seed of the probe batch.

    Raises:
        ValueError: naming ``TrainerConfig.batch_size``, the estimate and the memory available.
    """
    if batch_size <= SMALL_BATCH:
        return
    measured = _batch_bytes(batch_size, world_size, dataset, sampler, views, seed)
    if measured is None:
        return
    per_pair, per_batch = measured
    needed = per_batch + per_pair * batch_size
    free = available_memory(device)
    host = available_memory(torch.device("cpu")) if device.type == "cuda" else None
    for where, limit in ((device.type, free), ("cpu", host)):
        if limit is not None and needed > limit:
            raise ValueError(
                f"TrainerConfig.batch_size={batch_size} does not fit: one batch's inputs and indices alone take "
                f"about {readable_bytes(needed)} ({readable_bytes(per_pair)} per pair, activations not counted), more than the "
                f"{readable_bytes(limit)} free on {where}; use a batch_size below "
                f"{max(1, int((limit - per_batch) // max(per_pair, 1)))}"
            )


def check_sizes_against_data(batch_size: int, world_size: int, sampler: Sampler, method: nn.Module) -> None:
    """Check the batch and the method's key queues against the number of training samples, before any batch.

    A sampler that draws without replacement (:attr:`Sampler.max_batch_size`)
    cannot serve a global batch larger than its data: that is an error. A
    queue (MoCo's and SwAV's ``queue_size``, NNCLR's ``support_size``) longer
    than the data still trains, but holds several stale keys of each sample,
    among them the current positives' own keys (false negatives): a warning.

    Raises:
        ValueError: naming ``TrainerConfig.batch_size`` and the number of samples.
    """
    limit = sampler.max_batch_size
    if limit is not None and batch_size * world_size > limit:
        ranks = f" x {world_size} ranks" if world_size > 1 else ""
        raise ValueError(
            f"TrainerConfig.batch_size={batch_size:,}{ranks} is larger than the {limit:,} training samples; "
            f"{type(sampler).__name__} draws a batch without replacement: use a batch_size of at most "
            f"{limit // world_size:,}"
        )
    for module in method.modules():
        if isinstance(module, KeyQueue) and module.size > sampler.num_items:
            warn_at_caller(
                f"{type(method).__name__} {module.setting}={module.size:,} is longer than the {sampler.num_items:,} "
                f"training samples: the queue holds stale keys of the same samples, the positives' own among them "
                f"(false negatives); use {module.setting} <= {sampler.num_items:,}",
            )
