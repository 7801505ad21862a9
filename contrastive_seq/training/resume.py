"""The resume policy: which checkpoint a run continues from, whether it fits the run, and saving one from every rank.

A Trainer's checkpoint holds ``step`` (completed steps), the state dicts of
its ``model``, ``optimizer``, ``scheduler`` and ``scaler``, ``skipped_steps``,
``rng`` (every rank's random streams, as
:func:`~contrastive_seq.seeding.capture_random_state` gives them, in rank
order), ``config`` (the :class:`~contrastive_seq.training.trainer.TrainerConfig`
as plain values, :func:`plain_config`) and ``run_settings`` (what else
defines the run). A run continues from a checkpoint only when both share
their defining settings: everything but :data:`RESUMABLE_FIELDS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from contrastive_seq.seeding import capture_random_state, derive_seed, restore_random_state, seed_everything
from contrastive_seq.training.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    previous_checkpoint_path,
    save_checkpoint,
)
from contrastive_seq.user_warnings import warn_at_caller

RESUMABLE_FIELDS = frozenset(
    {
        "max_steps", "log_every", "eval_every", "checkpoint_every", "output_dir", "device", "num_workers",
        "progress", "on_nonfinite", "resume", "collective_timeout",
    }
)  # fmt: skip
"""TrainerConfig fields a resumed run may change: how long it runs, how often it reports and saves, where it runs."""


class Stateful(Protocol):
    """What a checkpoint keeps the state of: a module, an optimiser, a schedule, a gradient scaler."""

    def state_dict(self) -> dict[str, Any]: ...  # noqa: D102

    def load_state_dict(self, state: Any) -> Any: ...  # noqa: D102


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"section.field: saved -> current"`` for every field both settings hold with different values.

    Settings map sections to ``{field: value}``; a value that is itself a
    mapping (an open_clip ``vision`` dict) is compared whole. Fields only one
    side has (added in another library version) are not compared.
    """
    old, new = _by_field(saved), _by_field(current)
    return [f"{key}: {old[key]!r} -> {new[key]!r}" for key in old if key in new and old[key] != new[key]]


def _by_field(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"section.field": value}`` from ``{section: {field: value}}`` (a non-mapping section stays as it is)."""
    flat: dict[str, Any] = {}
    for section, fields in settings.items():
        if isinstance(fields, Mapping):
            flat.update({f"{section}.{field}": value for field, value in fields.items()})
        else:
            flat[section] = fields
    return flat


def defining_settings(config: Mapping[str, Any], run_settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": config without RESUMABLE_FIELDS, **run_settings}``: what a resumed run must share with its checkpoint."""
    return {"train": {key: value for key, value in config.items() if key not in RESUMABLE_FIELDS}, **run_settings}


def plain_config(config: Any) -> dict[str, Any]:
    """The dataclass ``config`` as plain values (paths as strings), as checkpoints keep it."""
    return {key: str(value) if isinstance(value, os.PathLike) else value for key, value in asdict(config).items()}


def check_settings(
    path: Path, state: Mapping[str, Any], config: Mapping[str, Any], run_settings: Mapping[str, Any]
) -> None:
    """Refuse the checkpoint ``state`` (read from ``path``) when it was written with other settings than
    ``config`` (a :func:`plain_config`) and ``run_settings``, apart from :data:`RESUMABLE_FIELDS`.

    Raises:
        CheckpointError: naming ``path`` and each differing ``section.field: saved -> current``.
    """
    saved_config, saved_settings = state.get("config") or {}, state.get("run_settings") or {}
    if not isinstance(saved_config, Mapping) or not isinstance(saved_settings, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a config or run_settings that is not a mapping")
    saved = defining_settings(saved_config, saved_settings)
    changes = settings_changes(saved, defining_settings(config, run_settings))
    if changes:
        raise CheckpointError(
            f"checkpoint {path} was written by a run with other settings ({'; '.join(changes)}); "
            f"resume with its settings, or start afresh in another output_dir (or delete {path.parent})"
        )


def find_checkpoint(policy: str, checkpoint: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``policy`` continues from: ``(its path, its state)``, or ``None`` to start at step 0.

    ``"never"`` reads nothing; ``"auto"`` and ``"must"`` take the newest
    intact one of ``checkpoint`` and the one kept before it
    (:func:`~contrastive_seq.training.checkpoint.load_latest_checkpoint`);
    ``checkpoint`` is ``None`` when the run has no output directory.

    Raises:
        FileNotFoundError: with ``"must"`` when there is none.
        CheckpointError: when the checkpoint is damaged and no intact older one exists.
    """
    found = None
    if policy != "never" and checkpoint is not None:
        found = load_latest_checkpoint(checkpoint, previous_checkpoint_path(checkpoint))
    if found is None and policy == "must":
        raise FileNotFoundError(
            f"TrainerConfig.resume='must' but there is no checkpoint to resume from "
            f"({checkpoint if checkpoint is not None else 'output_dir is None'})"
        )
    return found


def restore_run(
    path: Path, state: Mapping[str, Any], parts: Mapping[str, Stateful], max_steps: int, rank: int, seed: int
) -> tuple[int, int]:
    """Load ``parts`` (``{"model": method, "optimizer": ..., ...}``) and this rank's random streams from ``state``.

    A checkpoint written by fewer ranks than this run has no streams for the
    new ranks: they are reseeded from ``(seed, rank, step)``, with a warning.

    Returns:
        ``(step, skipped_steps)`` of the checkpoint.

    Raises:
        CheckpointError: naming ``path``, for a step outside ``[0, max_steps]``,
            states that do not fit ``parts``, or a bad ``skipped_steps``.
    """
    step = state.get("step")
    if type(step) is not int or not 0 <= step <= max_steps:  # a bool is no step count
        raise CheckpointError(
            f"checkpoint {path} is at step {step!r}, outside [0, TrainerConfig.max_steps={max_steps}]; "
            "raise max_steps, or choose another output_dir to start afresh"
        )
    try:
        for key, part in parts.items():
            part.load_state_dict(state[key])
        random_states = state["rng"]
        skipped = state.get("skipped_steps", 0)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this method and config: {exc}") from exc
    if rank < len(random_states):
        restore_random_state(random_states[rank])
    else:
        warn_at_caller(
            f"checkpoint {path} holds the random streams of {len(random_states)} ranks, not of rank {rank}; "
            "this rank reseeds them from (seed, rank, step)"
        )
        seed_everything(derive_seed(seed, rank, step))
    if type(skipped) is not int or skipped < 0:
        raise CheckpointError(f"checkpoint {path} has skipped_steps {skipped!r}, expected a non-negative int")
    return step, skipped


def check_ranks_agree(step: int, world_size: int, device: torch.device) -> None:
    """Fail on every rank when the ranks would start from different steps (an unshared output_dir).

    A collective: every rank calls it with the step it would start from.
    """
    if world_size == 1:
        return
    steps = torch.tensor([step, -step], dtype=torch.float64, device=device)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    if steps[0].item() != -steps[1].item():
        raise RuntimeError(
            f"ranks would resume from different steps (between {int(-steps[1].item())} and "
            f"{int(steps[0].item())}); output_dir must be one directory shared by all ranks"
        )


def gather_random_states(world_size: int) -> list[dict[str, Any]]:
    """Every rank's random streams (:func:`~contrastive_seq.seeding.capture_random_state`) in rank order.

    A collective on more than one rank: every rank calls it.
    """
    if world_size == 1:
        return [capture_random_state()]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, capture_random_state())
    return states


def save_from_rank_zero(
    path: Path, state: Mapping[str, Any] | None, keep_previous: Path | None, world_size: int, device: torch.device
) -> None:
    """Rank 0 (the one rank that passes a ``state``) writes it to ``path``; every rank waits until it is written.

    The write is :func:`~contrastive_seq.training.checkpoint.save_checkpoint`
    (atomic, checksummed, the checkpoint already there moved to ``keep_previous``).
    A collective on more than one rank: when rank 0 fails, every rank raises.

    Raises:
        OSError, CheckpointError: on rank 0, what the write raised.
        RuntimeError: on the other ranks, naming ``path``, when rank 0 could not write it.
    """
    error = None
    if state is not None:
        try:
            save_checkpoint(path, state, keep_previous)
        except (OSError, CheckpointError) as exc:
            error = exc
    if world_size > 1:
        failed = torch.tensor([float(error is not None)], device=device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)  # also the barrier after the write
        if error is None and failed.item():
            raise RuntimeError(f"rank 0 could not save checkpoint {path}")
    if error is not None:
        raise error
