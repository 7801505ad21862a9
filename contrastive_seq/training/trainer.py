"""The one training loop: one CPU, one GPU, or N GPUs under torchrun, with the same code.

The Trainer knows nothing about particular methods. Each step it takes the
batch of that step from :class:`SampledBatches`, calls the (possibly
DDP-wrapped) :class:`Method` on it to get a :class:`LossOutput`, back-propagates,
steps the optimiser and the learning-rate schedule and then calls
``method.after_step(step)`` for EMA updates, queues and the like.

Steps are counted two ways: ``step`` (0-based) is the index of a batch and
of the optimiser step that uses it, and is what ``after_step`` receives;
"completed steps" (``step + 1``) is what metrics, checkpoints and the
progress bar report.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from contrastive_seq import distributed
from contrastive_seq.atomic_files import check_output_dir
from contrastive_seq.training.monitor import EmbeddingSpread, LossPlateau, input_warnings, judged_window
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.seeding import derive_seed
from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest_checkpoint,
    previous_checkpoint_path,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from contrastive_seq.training.config import TrainerConfig, _is_int
from contrastive_seq.training.metrics import MetricsWriter, flatten
from contrastive_seq.training.optimizers import build_optimizer, build_scheduler
from contrastive_seq.training.sizes import check_batch_fits, check_sizes_against_data
from contrastive_seq.views.base import Views

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"

Evaluate = Callable[[Method], Mapping[str, float]]


RESUMABLE_FIELDS = frozenset(
    {
        "max_steps", "log_every", "eval_every", "checkpoint_every", "output_dir", "device", "num_workers",
        "progress", "on_nonfinite", "resume", "collective_timeout",
    }
)  # fmt: skip
"""TrainerConfig fields a resumed run may change: how long it runs, how often it reports and saves, where it runs."""


def _settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
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


def _defining_settings(config: Mapping[str, Any], run_settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": config without RESUMABLE_FIELDS, **run_settings}``: what a resumed run must share with its checkpoint."""
    return {"train": {key: value for key, value in config.items() if key not in RESUMABLE_FIELDS}, **run_settings}


class NonFiniteLossError(FloatingPointError):
    """The loss was NaN or infinite at a step and ``TrainerConfig.on_nonfinite`` is ``"stop"``.

    Attributes:
        step: the 0-based step (the optimiser step that was not taken).
        pairs: this rank's :class:`~contrastive_seq.sampling.base.PairIndex` of that step
            (the sample indices of the batch).
        checkpoint: the last checkpoint this run wrote or resumed from (``None`` when there is none).
    """

    def __init__(self, loss: float, step: int, pairs: PairIndex, checkpoint: Path | None):
        self.step, self.pairs, self.checkpoint = step, pairs, checkpoint
        where = (
            f"the last good checkpoint is {checkpoint} (resume with fit(resume=True) after fixing the cause)"
            if checkpoint is not None
            else "no checkpoint was written before it"
        )
        named = (("reference", pairs.reference), ("positive", pairs.positive), ("negative", pairs.negative))
        indices = "; ".join(
            f"{name} {tuple(value.shape)} "
            + np.array2string(value.reshape(-1).numpy(), threshold=20, edgeitems=5, max_line_width=1 << 20)
            for name, value in named
            if value is not None
        )
        super().__init__(
            f"the loss is {loss} at step {step} (0-based; on at least one rank); no optimiser step was taken; "
            f"{where}. This rank's batch indices ({len(pairs)} pairs, all in .pairs): {indices}"
        )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def _resolve_device(config: TrainerConfig) -> torch.device:
    """The device of this rank: CPU, or ``cuda:LOCAL_RANK`` (set as the current CUDA device)."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainerConfig.device='cuda' but CUDA is not available; use device='auto' or 'cpu'")
    if config.device == "cpu" or not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        local_rank = _env_int("LOCAL_RANK", 0)
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


def _init_process_group(device: torch.device, timeout: float) -> dist.Store | None:
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
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    store, rank, world = next(
        dist.rendezvous("env://", rank=_env_int("RANK", 0), world_size=world, timeout=timedelta(seconds=timeout))
    )
    store = dist.PrefixStore(f"attempt{_env_int('TORCHELASTIC_RESTART_COUNT', 0)}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
    distributed.keep_group_store(store)
    return store


def _seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(value: Any, device: torch.device, non_blocking: bool) -> Any:
    """``value`` (a tensor, or dicts / lists / tuples of them) on ``device``; other leaves unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device, non_blocking) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device, non_blocking) for item in value)
    return value


class Trainer:
    """Trains a :class:`Method` on the batches a sampler and views produce.

    Construction checks everything (config, device, precision, argument
    types), seeds nothing yet, joins the torchrun process group when the
    environment describes one (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) and none is initialised, moves the method to the device,
    wraps it in :class:`DistributedDataParallel` on more than one rank, and
    builds the optimiser, the learning-rate schedule and the gradient scaler.

    Args:
        method: the model and its loss; ``method(batch)`` returns a :class:`LossOutput`.
        config: the run's settings.
        dataset: what ``views`` index into.
        sampler: draws each step's pairs.
        views: turns pairs into the batch dict passed to ``method``.
        evaluate: optional ``evaluate(method) -> {name: value}``, called on
            every rank (the method in eval mode, the training random streams
            saved and restored around it) every ``config.eval_every`` steps and
            at the end; its results are logged under ``eval``.
        run_settings: what else defines the run, as plain nested values (an
            experiment's data, model and method sections). Each checkpoint
            keeps them with ``config``; resuming from a checkpoint whose
            settings differ (other than :data:`RESUMABLE_FIELDS`) raises
            :class:`CheckpointError` naming each difference, so a rerun with
            a new seed or learning rate in an old ``output_dir`` does not
            silently continue, or report, the old run.

    Attributes:
        method: the unwrapped method (what ``after_step`` and ``evaluate`` get).
        module: what the loop calls: ``method`` or its DDP wrapper.
        optimizer, scheduler, scaler: the optimisation state a checkpoint holds.
        batches: the :class:`SampledBatches` of this rank.
        device, rank, world_size: where this process runs.
        step: completed optimiser steps.
        skipped_steps: steps dropped for a non-finite loss (``on_nonfinite="skip"``),
            counted over the whole run (a checkpoint keeps the count).
        last_checkpoint: the checkpoint last written or resumed from (``None`` before either).
        history: the records logged by :meth:`fit` in this process (step, loss,
            parts, lr, throughput, eval), also kept when ``output_dir`` is ``None``.
    """

    def __init__(
        self,
        method: Method,
        config: TrainerConfig,
        dataset: object,
        sampler: Sampler,
        views: Views | Callable[..., dict[str, torch.Tensor]],
        evaluate: Evaluate | None = None,
        run_settings: Mapping[str, Any] | None = None,
    ):
        if not isinstance(method, Method):
            raise TypeError(f"method must be a contrastive_seq Method, got {type(method).__name__}")
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a contrastive_seq Sampler, got {type(sampler).__name__}")
        if not callable(views):
            raise TypeError(f"views must be callable as views(dataset, pairs, generator), got {type(views).__name__}")
        if evaluate is not None and not callable(evaluate):
            raise TypeError(f"evaluate must be None or callable as evaluate(method), got {type(evaluate).__name__}")
        if not any(parameter.requires_grad for parameter in method.parameters()):
            raise ValueError(f"method {type(method).__name__} has no trainable parameters")
        if run_settings is not None and not isinstance(run_settings, Mapping):
            raise TypeError(f"run_settings must be None or a mapping, got {type(run_settings).__name__}")
        self.config = config
        self.evaluate = evaluate
        self.run_settings = dict(run_settings or {})
        if config.output_dir is not None:
            check_output_dir(
                Path(config.output_dir),
                (CHECKPOINT_NAME, previous_checkpoint_path(Path(CHECKPOINT_NAME)).name, METRICS_NAME),
            )
        self.device = _resolve_device(config)
        self._store = _init_process_group(self.device, config.collective_timeout)
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        method.to(self.device)
        if config.sync_batchnorm and self.world_size > 1:
            if self.device.type != "cuda":
                raise ValueError("TrainerConfig.sync_batchnorm=True needs CUDA when running on more than one rank")
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        self.method = method
        self.module: nn.Module = method
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(method, device_ids=device_ids)
        self._parameters = [parameter for parameter in method.parameters() if parameter.requires_grad]
        self._set_run_length(method)
        self.optimizer = build_optimizer(method, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.batches = SampledBatches(
            dataset,
            sampler,
            views,
            config.batch_size,
            num_steps=config.max_steps,
            seed=config.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        self.step = 0
        self.skipped_steps = 0
        self.last_checkpoint: Path | None = None
        self.history: list[dict[str, Any]] = []
        check_sizes_against_data(config.batch_size, self.world_size, sampler, method)
        check_batch_fits(config.batch_size, self.world_size, dataset, sampler, views, self.device, config.seed)
        # draw one batch of indices now, so that a sampler that cannot serve this batch size fails before training
        sampler.sample(config.batch_size * self.world_size, torch.Generator().manual_seed(config.seed))

    @property
    def output_dir(self) -> Path | None:
        """``config.output_dir`` as a path (``None`` when the run writes nothing)."""
        return None if self.config.output_dir is None else Path(self.config.output_dir)

    @property
    def checkpoint_path(self) -> Path | None:
        """``output_dir / "checkpoint.pt"``, the checkpoint this run writes and resumes from."""
        return None if self.output_dir is None else self.output_dir / CHECKPOINT_NAME

    def fit(self, resume: bool | str | os.PathLike | None = None) -> dict[str, float]:
        """Train up to ``config.max_steps`` completed steps and return the final metrics.

        Rank 0 prints the step a resumed run continues from, and, for a run
        already at ``max_steps``, that it is finished and where its output is
        (it then trains no further; ``evaluate`` still runs).

        Args:
            resume: ``None`` follows ``config.resume``; ``True`` is ``"auto"``
                (continue from ``output_dir/checkpoint.pt``, or from
                ``checkpoint.previous.pt`` with a warning when the newer one is
                damaged); ``False`` is ``"never"``; a path continues from that
                checkpoint, which must exist.

        Returns:
            ``{"step", "loss", "parts/<name>", "lr", "samples_per_s", "eval/<name>"}``
            of the last step (loss and parts averaged over ranks; training keys
            are absent when the checkpoint was already at ``max_steps``).

        Raises:
            NonFiniteLossError: (a ``FloatingPointError``) naming the step, its
                batch indices and the last good checkpoint, when the loss is NaN or
                infinite on any rank and ``on_nonfinite="stop"``; no optimiser step
                is taken with it.
            FileNotFoundError, CheckpointError: naming the file, for a missing
                explicit checkpoint (or none with ``resume="must"``), or one that
                is damaged (with no intact older one), cannot be read or does not fit.
            PeerFailureError: on more than one rank, when a collective fails or
                waits longer than ``config.collective_timeout``, naming the ranks
                that no longer answer.
        """
        config = self.config
        _seed_everything(derive_seed(config.seed, self.rank))
        if resume is None:
            self._resume(config.resume, None)
        elif isinstance(resume, bool):
            self._resume("auto" if resume else "never", None)
        elif isinstance(resume, (str, os.PathLike)):
            self._resume("must", Path(resume))
        else:
            raise TypeError(f"resume must be None, a bool or a checkpoint path, got {type(resume).__name__}")
        start = self.step
        final: dict[str, Any] = {"step": start}
        if start == config.max_steps:
            self._say(
                f"the run is finished: {self.last_checkpoint} is at step {start} = max_steps; nothing to train "
                f"(its output is in {self.last_checkpoint.parent}; raise max_steps to train on)"
            )
            if self.evaluate is not None:
                final.update(flatten({"eval": self._evaluate()}))
            return final
        writer = None
        if self.output_dir is not None:
            writer = MetricsWriter(self.output_dir / METRICS_NAME, enabled=self.rank == 0, resume_step=start)
        loader = DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(start, config.max_steps),
            num_workers=config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(derive_seed(config.seed, self.rank)),
        )
        samples_per_step = config.batch_size * self.world_size
        bar = tqdm(
            total=config.max_steps,
            initial=start,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (config.progress and self.rank == 0),
        )
        self.module.train()
        window_start, window_steps = time.perf_counter(), 0
        plateau = LossPlateau(config.warmup_steps, config.max_steps) if start == 0 and self.rank == 0 else None
        spread, collapse_warned = EmbeddingSpread(self.method), False
        spread_from = judged_window(config.warmup_steps, config.max_steps)[1] + 1  # an untrained encoder may not spread
        try:
            for step, batch in enumerate(loader, start=start):
                if step == start and self.rank == 0:
                    for message in input_warnings(batch):
                        warnings.warn(message, RuntimeWarning, stacklevel=2)
                lr = self.optimizer.param_groups[0]["lr"]
                logged = step + 1 == config.max_steps or (step + 1) % config.log_every == 0
                if logged and step + 1 >= spread_from and self.rank == 0 and not collapse_warned:
                    with spread.watching():
                        scalars = self._train_step(step, batch)
                    if message := spread.collapsed(step + 1):
                        warnings.warn(message, RuntimeWarning, stacklevel=2)
                        collapse_warned = True
                else:
                    scalars = self._train_step(step, batch)
                if plateau is not None and (message := plateau.observe(step + 1, scalars["loss"])):
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                self.step = done = step + 1
                window_steps += 1
                rate = window_steps * samples_per_step / max(time.perf_counter() - window_start, 1e-9)
                bar.set_postfix(loss=f"{scalars['loss']:.4g}", samples_s=f"{rate:.0f}", refresh=False)
                bar.update()
                last = done == config.max_steps
                record: dict[str, Any] = {"step": done}
                if last or done % config.log_every == 0:
                    loss = scalars.pop("loss")
                    record.update(loss=loss, parts=scalars, lr=lr, samples_per_s=rate)
                    if config.on_nonfinite == "skip":
                        record["skipped_steps"] = self.skipped_steps
                    window_start, window_steps = time.perf_counter(), 0
                paused = time.perf_counter()  # evaluation and checkpoints do not count against throughput
                if self.evaluate is not None and (last or (config.eval_every and done % config.eval_every == 0)):
                    record["eval"] = self._evaluate()
                if len(record) > 1:
                    self.history.append(record)
                    if writer is not None:
                        writer.write(record)
                if self.output_dir is not None and (
                    last or (config.checkpoint_every and done % config.checkpoint_every == 0)
                ):
                    self._save()
                window_start += time.perf_counter() - paused
                if last:
                    final = flatten(record)
        except RuntimeError as exc:
            if self.world_size > 1 and distributed.is_collective_failure(exc):
                raise distributed.peer_failure(exc, self._store, config.collective_timeout) from exc
            raise
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return final

    def _train_step(self, step: int, batch: Mapping[str, Any]) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss and its parts, averaged over ranks."""
        batch = _to_device(batch, self.device, non_blocking=self.device.type == "cuda")
        self.optimizer.zero_grad(set_to_none=True)
        # a forward pass that ends in a skipped step must not leave NaN in running statistics
        buffers = [buffer.clone() for buffer in self.method.buffers()] if self.config.on_nonfinite == "skip" else []
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            output = self.module(batch)
        if not isinstance(output, LossOutput):
            raise TypeError(
                f"{type(self.method).__name__}.training_step must return a LossOutput, got {type(output).__name__}"
            )
        scalars = self._mean_scalars(output)
        if not math.isfinite(scalars["loss"]):
            self._non_finite_loss(step, scalars["loss"])
            with torch.no_grad():
                for buffer, before in zip(self.method.buffers(), buffers, strict=True):
                    buffer.copy_(before)
            return scalars
        self.scaler.scale(output.loss).backward()
        self.scaler.unscale_(self.optimizer)  # the hook and clipping see true gradients (a no-op unless fp16)
        self.method.before_optimizer_step(step)
        self._check_run_length("before_optimizer_step")
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self._parameters, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.method.after_step(step)
        self._check_run_length("after_step")
        return scalars

    def _set_run_length(self, method: Method) -> None:
        """Tell the method the run's length (its schedules default to it) and check that it kept it."""
        method.set_total_steps(self.config.max_steps)
        self._check_run_length("set_total_steps")

    def _check_run_length(self, hook: str) -> None:
        """Refuse a method whose ``hook`` left ``total_steps`` other than ``TrainerConfig.max_steps``."""
        if self.method.total_steps != self.config.max_steps:
            raise ValueError(
                f"{type(self.method).__name__}.{hook} changed the run's step count: total_steps is "
                f"{self.method.total_steps!r}, expected TrainerConfig.max_steps={self.config.max_steps}; "
                "a method reads the run length, the Trainer sets it"
            )

    def _non_finite_loss(self, step: int, loss: float) -> None:
        """Stop with :class:`NonFiniteLossError`, or drop the step and count it (``config.on_nonfinite``).

        Every rank sees the same averaged loss, so every rank takes the same branch.
        """
        if self.config.on_nonfinite == "stop":
            raise NonFiniteLossError(loss, step, self.batches.pairs(step), self.last_checkpoint)
        self.skipped_steps += 1
        warnings.warn(
            f"the loss is {loss} at step {step} (0-based); the step is skipped "
            f"({self.skipped_steps} skipped in this run so far)",
            RuntimeWarning,
            stacklevel=4,
        )
        with warnings.catch_warnings():  # the schedule follows the step count even when no optimiser step was taken
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()

    def _mean_scalars(self, output: LossOutput) -> dict[str, float]:
        """The loss and its parts as floats, averaged over ranks (one collective, one device sync).

        A NaN on any rank makes the average NaN, so every rank sees it together.
        """
        names, values = output.stacked()
        return dict(zip(names, distributed.all_reduce_mean(values).tolist()))

    def _evaluate(self) -> dict[str, float]:
        """Run the callback in eval mode, leaving the training random streams as they were."""
        saved = rng_state()
        self.method.eval()
        try:
            results = self.evaluate(self.method)
        finally:
            self.method.train()
            set_rng_state(saved)
        if not isinstance(results, Mapping):
            raise TypeError(f"evaluate must return a mapping of names to numbers, got {type(results).__name__}")
        return {str(name): float(value) for name, value in results.items()}

    def _save(self) -> None:
        """Write the checkpoint on rank 0 (atomically); every rank waits until it is written.

        The random streams of all ranks are gathered, so each rank resumes its own.
        """
        states = [rng_state()]
        if self.world_size > 1:
            states = [None] * self.world_size
            dist.all_gather_object(states, rng_state())
        error = None
        if self.rank == 0:
            state = {
                "step": self.step,
                "model": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "skipped_steps": self.skipped_steps,
                "rng": states,
                "config": self._plain_config(),
                "run_settings": self.run_settings,
            }
            previous = previous_checkpoint_path(self.checkpoint_path)
            try:
                # the newest checkpoint moves to `previous`, unless this run fell back to `previous` (it is damaged)
                save_checkpoint(self.checkpoint_path, state, None if self.last_checkpoint == previous else previous)
            except (OSError, CheckpointError) as exc:
                error = exc
        if self.world_size > 1:
            failed = torch.tensor([float(error is not None)], device=self.device)
            dist.all_reduce(failed, op=dist.ReduceOp.MAX)  # also the barrier after the write
            if error is None and failed.item():
                raise RuntimeError(f"rank 0 could not save checkpoint {self.checkpoint_path}")
        if error is not None:
            raise error
        self.last_checkpoint = self.checkpoint_path

    def _plain_config(self) -> dict[str, Any]:
        """``config`` as plain values (paths as strings), as checkpoints keep it."""
        return {key: str(value) if isinstance(value, os.PathLike) else value for key, value in asdict(self.config).items()}

    def _check_settings(self, path: Path, state: Mapping[str, Any]) -> None:
        """Refuse a checkpoint written with other settings than this run's (apart from :data:`RESUMABLE_FIELDS`)."""
        saved_config, saved_settings = state.get("config") or {}, state.get("run_settings") or {}
        if not isinstance(saved_config, Mapping) or not isinstance(saved_settings, Mapping):
            raise CheckpointError(f"checkpoint {path} holds a config or run_settings that is not a mapping")
        saved = _defining_settings(saved_config, saved_settings)
        changes = _settings_changes(saved, _defining_settings(self._plain_config(), self.run_settings))
        if changes:
            raise CheckpointError(
                f"checkpoint {path} was written by a run with other settings ({'; '.join(changes)}); "
                f"resume with its settings, or start afresh in another output_dir (or delete {path.parent})"
            )

    def _say(self, message: str) -> None:
        """Print ``message`` on rank 0."""
        if self.rank == 0:
            print(message, flush=True)

    def _resume(self, policy: str, path: Path | None) -> None:
        """Load the checkpoint ``path``, or the one ``policy`` finds in ``output_dir``, and set :attr:`step` from it."""
        if path is not None:
            state = load_checkpoint(path)
        else:
            found = None
            if policy != "never" and self.checkpoint_path is not None:
                found = load_latest_checkpoint(self.checkpoint_path, previous_checkpoint_path(self.checkpoint_path))
            if found is None:
                if policy == "must":
                    raise FileNotFoundError(
                        f"TrainerConfig.resume='must' but there is no checkpoint to resume from "
                        f"({self.checkpoint_path if self.checkpoint_path is not None else 'output_dir is None'})"
                    )
                self._check_ranks_agree()
                return
            path, state = found
        self._check_settings(path, state)
        step = state.get("step")
        if not _is_int(step) or not 0 <= step <= self.config.max_steps:
            raise CheckpointError(
                f"checkpoint {path} is at step {step!r}, outside [0, TrainerConfig.max_steps={self.config.max_steps}]; "
                "raise max_steps, or choose another output_dir to start afresh"
            )
        try:
            self.method.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            rng = state["rng"]
            skipped = state.get("skipped_steps", 0)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this method and config: {exc}") from exc
        if self.rank < len(rng):
            set_rng_state(rng[self.rank])
        else:
            warnings.warn(
                f"checkpoint {path} holds the random streams of {len(rng)} ranks, not of rank {self.rank}; "
                "this rank reseeds them from (seed, rank, step)",
                stacklevel=3,
            )
            _seed_everything(derive_seed(self.config.seed, self.rank, step))
        if not _is_int(skipped) or skipped < 0:
            raise CheckpointError(f"checkpoint {path} has skipped_steps {skipped!r}, expected a non-negative int")
        self.step, self.skipped_steps, self.last_checkpoint = step, skipped, path
        self._check_ranks_agree()
        if step < self.config.max_steps:
            self._say(f"resuming from {path} at step {step} of {self.config.max_steps}")

    def _check_ranks_agree(self) -> None:
        """Fail on every rank when the ranks would start from different steps (an unshared output_dir)."""
        if self.world_size == 1:
            return
        steps = torch.tensor([self.step, -self.step], dtype=torch.float64, device=self.device)
        dist.all_reduce(steps, op=dist.ReduceOp.MAX)
        if steps[0].item() != -steps[1].item():
            raise RuntimeError(
                f"ranks would resume from different steps (between {int(-steps[1].item())} and "
                f"{int(steps[0].item())}); output_dir must be one directory shared by all ranks"
            )
