"""Where a training process runs: its device, and its place in the process group torchrun describes.

torchrun (or any launcher that sets the same variables) tells each process
its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and where to meet the others
(``MASTER_ADDR``, ``MASTER_PORT``). :func:`resolve_device` picks the rank's
device from them and the run's device and precision settings;
:func:`join_process_group` creates the group. Leaving it, and the
rank-aware helpers used inside a run, are in :mod:`contrastive_seq.distributed`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Protocol

import torch
import torch.distributed as dist

from contrastive_seq import distributed


class DeviceSettings(Protocol):
    """The fields of :class:`~contrastive_seq.training.trainer.TrainerConfig` that choose the device."""

    device: str
    precision: str


def env_int(name: str, default: int) -> int:
    """The environment variable ``name`` as an int; ``default`` when it is not set.

    Raises:
        ValueError: naming the variable, when it is set to something other than an int.
    """
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def resolve_device(config: DeviceSettings) -> torch.device:
    """The device of this rank: CPU, or ``cuda:LOCAL_RANK`` (set as the current CUDA device).

    Raises:
        ValueError: naming the setting, for CUDA asked for but absent, a
            ``LOCAL_RANK`` with no device, or a precision the device lacks.
    """
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainerConfig.device='cuda' but CUDA is not available; use device='auto' or 'cpu'")
    if config.device == "cpu" or not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        local_rank = env_int("LOCAL_RANK", 0)
        if not 0 <= local_rank < torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "TrainerConfig.precision='fp16' needs a CUDA device, and this run is on the CPU; use 'bf16' or 'fp32'"
        )
    if config.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"TrainerConfig.precision='bf16' is not supported by {torch.cuda.get_device_name(device)}")
    return device


def join_process_group(device: torch.device, timeout: float) -> dist.Store | None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), unless one exists.

    NCCL on CUDA, gloo on the CPU; a world size of 1 (or no WORLD_SIZE) needs no group.
    The group's keys in the rendezvous store are prefixed with torchrun's restart
    count (TORCHELASTIC_RESTART_COUNT): torchrun keeps one store across restarts, and
    a restarted group must not read the addresses the lost processes published there.
    Every collective of the group fails after ``timeout`` seconds.

    Returns:
        the group's store (what :func:`~contrastive_seq.distributed.peer_failure` probes
        the ranks through), or ``None`` when there is no group or it was created elsewhere.
    """
    if not dist.is_available():
        return None
    if dist.is_initialized():
        return distributed.group_store()
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    store, rank, world = next(
        dist.rendezvous("env://", rank=env_int("RANK", 0), world_size=world, timeout=timedelta(seconds=timeout))
    )
    store = dist.PrefixStore(f"attempt{env_int('TORCHELASTIC_RESTART_COUNT', 0)}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
    distributed.keep_group_store(store)
    return store
