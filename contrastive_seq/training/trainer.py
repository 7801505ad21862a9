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

What the loop leans on lives next to it: where the process runs
(:mod:`~contrastive_seq.training.processes`), the optimiser and its schedules
(:mod:`~contrastive_seq.training.optimizers`), the resume policy and
checkpoint writing (:mod:`~contrastive_seq.training.resume`), the progress
bar and metrics (:mod:`~contrastive_seq.training.progress`) and the
degenerate-run warnings (:mod:`~contrastive_seq.training.monitor`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from contrastive_seq import distributed
from contrastive_seq.atomic_files import check_output_dir
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.memory import workers_share_memory
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.seeding import derive_seed, forked_random_state, seed_everything
from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.training.checkpoint import load_checkpoint, previous_checkpoint_path
from contrastive_seq.training.metrics import flatten
from contrastive_seq.training.monitor import RunWatch
from contrastive_seq.training.config import CHECKPOINT_NAME, METRICS_NAME, TrainerConfig
from contrastive_seq.training.optimizers import build_optimizer, build_scheduler
from contrastive_seq.training.processes import join_process_group, resolve_device
from contrastive_seq.training.progress import Progress
from contrastive_seq.training.resume import (
    Stateful,
    check_ranks_agree,
    check_settings,
    find_checkpoint,
    gather_random_states,
    plain_config,
    restore_run,
    save_from_rank_zero,
)
from contrastive_seq.training.sizes import check_batch_fits, check_sizes_against_data
from contrastive_seq.user_warnings import warn_at_caller
from contrastive_seq.views.base import Views

Evaluate = Callable[[Method], Mapping[str, float]]


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


def _to_device(value: Any, device: torch.device, non_blocking: bool) -> Any:
    """``value`` (a tensor, or dicts / lists / tuples of them) on ``device``; other leaves unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device, non_blocking) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device, non_blocking) for item in value)
    return value


def _check_arguments(
    method: object, config: object, sampler: object, views: object, evaluate: object, run_settings: object
) -> None:
    """Refuse arguments of :class:`Trainer` of the wrong kind, naming the argument (before anything is built)."""
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
            settings differ (other than
            :data:`~contrastive_seq.training.resume.RESUMABLE_FIELDS`) raises
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
        _check_arguments(method, config, sampler, views, evaluate, run_settings)
        self.config = config
        self.evaluate = evaluate
        self.run_settings = dict(run_settings or {})
        if config.output_dir is not None:
            check_output_dir(
                Path(config.output_dir),
                (CHECKPOINT_NAME, previous_checkpoint_path(Path(CHECKPOINT_NAME)).name, METRICS_NAME),
            )
        self.device = resolve_device(config)
        self._store = join_process_group(self.device, config.collective_timeout)
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        self.method, self.module = self._placed(method)
        self._parameters = [parameter for parameter in self.method.parameters() if parameter.requires_grad]
        self._set_run_length(self.method)
        self.optimizer = build_optimizer(self.method, config)
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
        self._check_data(dataset, sampler, views)

    def _placed(self, method: Method) -> tuple[Method, nn.Module]:
        """``method`` on this rank's device (SyncBatchNorm when asked) and what the loop calls: it or its DDP wrapper."""
        method.to(self.device)
        if self.config.sync_batchnorm and self.world_size > 1:
            if self.device.type != "cuda":
                raise ValueError("TrainerConfig.sync_batchnorm=True needs CUDA when running on more than one rank")
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        if self.world_size == 1:
            return method, method
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return method, DistributedDataParallel(method, device_ids=device_ids)

    def _check_data(self, dataset: object, sampler: Sampler, views: Callable[..., Any]) -> None:
        """Refuse a batch size the data, the sampler or the memory cannot serve, before any training."""
        config = self.config
        check_sizes_against_data(config.batch_size, self.world_size, sampler, self.method)
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
        start = self._start(resume)
        if start == config.max_steps:
            return self._finished(start)
        final: dict[str, Any] = {"step": start}
        progress = self._progress(start)
        watch = RunWatch(self.method, start, config.warmup_steps, config.max_steps, config.log_every, self.rank == 0)
        self.module.train()
        # forked workers share this process's memory instead of copying it (memory.workers_share_memory)
        with workers_share_memory() if config.num_workers else contextlib.nullcontext():
            try:
                for step, batch in enumerate(self._loader(start), start=start):
                    lr = self.optimizer.param_groups[0]["lr"]
                    scalars = self._watched_step(step, batch, watch)
                    self.step = step + 1
                    record = self._record(scalars, lr, progress)
                    self._evaluate_log_and_save(record, progress)
                    if self.step == config.max_steps:
                        final = flatten(record)
            except RuntimeError as exc:
                if self.world_size > 1 and distributed.is_collective_failure(exc):
                    raise distributed.peer_failure(exc, self._store, config.collective_timeout) from exc
                raise
            finally:
                progress.close()
        distributed.broadcast_buffers(self.method)  # every rank leaves with the checkpoint's model
        return final

    def _start(self, resume: bool | str | os.PathLike | None) -> int:
        """Seed this rank's random streams, resume as ``resume`` (see :meth:`fit`) says; returns the step to start at."""
        seed_everything(derive_seed(self.config.seed, self.rank))
        if resume is None:
            self._resume(self.config.resume, None)
        elif isinstance(resume, bool):
            self._resume("auto" if resume else "never", None)
        elif isinstance(resume, (str, os.PathLike)):
            self._resume("must", Path(resume))
        else:
            raise TypeError(f"resume must be None, a bool or a checkpoint path, got {type(resume).__name__}")
        return self.step

    def _finished(self, start: int) -> dict[str, Any]:
        """What :meth:`fit` does for a run already at ``max_steps``: say so, evaluate, train nothing."""
        self._say(
            f"the run is finished: {self.last_checkpoint} is at step {start} = max_steps; nothing to train "
            f"(its output is in {self.last_checkpoint.parent}; raise max_steps to train on)"
        )
        final: dict[str, Any] = {"step": start}
        if self.evaluate is not None:
            final.update(flatten({"eval": self._evaluate()}))
        return final

    def _loader(self, start: int) -> DataLoader:
        """The batches of steps ``start`` to ``max_steps - 1``, built by ``num_workers`` processes (or this one)."""
        return DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(start, self.config.max_steps),
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(derive_seed(self.config.seed, self.rank)),
        )

    def _progress(self, start: int) -> Progress:
        """The progress bar (rank 0, when ``config.progress``), throughput and metrics file of a fit from ``start``."""
        metrics = None if self.output_dir is None else self.output_dir / METRICS_NAME
        samples, show = self.config.batch_size * self.world_size, self.config.progress and self.rank == 0
        return Progress(start, self.config.max_steps, samples, show, metrics, write=self.rank == 0)

    def _watched_step(self, step: int, batch: Mapping[str, Any], watch: RunWatch) -> dict[str, float]:
        """:meth:`_train_step`, warning (on rank 0) of degenerate inputs, a loss that never moves, collapse."""
        for message in watch.first_batch(step, batch):
            warn_at_caller(message, RuntimeWarning)
        with watch.watching(step):
            scalars = self._train_step(step, batch)
        for message in watch.after_step(step, scalars["loss"]):
            warn_at_caller(message, RuntimeWarning)
        return scalars

    def _record(self, scalars: dict[str, float], lr: float, progress: Progress) -> dict[str, Any]:
        """The record of the step just completed: ``{"step"}``, plus loss, parts, lr and throughput at a logged step."""
        rate = progress.advance(scalars["loss"])
        record: dict[str, Any] = {"step": self.step}
        if self.step == self.config.max_steps or self.step % self.config.log_every == 0:
            loss = scalars.pop("loss")
            record.update(loss=loss, parts=scalars, lr=lr, samples_per_s=rate)
            if self.config.on_nonfinite == "skip":
                record["skipped_steps"] = self.skipped_steps
            progress.restart_window()
        return record

    def _evaluate_log_and_save(self, record: dict[str, Any], progress: Progress) -> None:
        """Evaluate into ``record``, keep and write it, and save a checkpoint, each at the steps the config asks.

        The time this takes does not count against the throughput.
        """
        config, done = self.config, self.step
        last = done == config.max_steps
        with progress.paused():
            if self.evaluate is not None and (last or (config.eval_every and done % config.eval_every == 0)):
                record["eval"] = self._evaluate()
            if len(record) > 1:
                self.history.append(record)
                progress.write(record)
            saving = last or (config.checkpoint_every and done % config.checkpoint_every == 0)
            if self.output_dir is not None and saving:
                self._save()

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
        warn_at_caller(
            f"the loss is {loss} at step {step} (0-based); the step is skipped "
            f"({self.skipped_steps} skipped in this run so far)",
            RuntimeWarning,
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
        """Run the callback in eval mode on rank 0's buffers, leaving the training random streams as they were."""
        distributed.broadcast_buffers(self.method)  # the ranks evaluate one model (each may embed its share)
        with forked_random_state():
            self.method.eval()
            try:
                results = self.evaluate(self.method)
            finally:
                self.method.train()
        if not isinstance(results, Mapping):
            raise TypeError(f"evaluate must return a mapping of names to numbers, got {type(results).__name__}")
        return {str(name): float(value) for name, value in results.items()}

    def _parts(self) -> dict[str, Stateful]:
        """What a checkpoint keeps the state dicts of, by their keys in it."""
        return {"model": self.method, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def _save(self) -> None:
        """Write the checkpoint on rank 0 (atomically); every rank waits until it is written.

        The random streams of all ranks are gathered, so each rank resumes its own.
        """
        random_states = gather_random_states(self.world_size)
        state = None
        if self.rank == 0:
            state = {
                "step": self.step,
                **{key: part.state_dict() for key, part in self._parts().items()},
                "skipped_steps": self.skipped_steps,
                "rng": random_states,
                "config": plain_config(self.config),
                "run_settings": self.run_settings,
            }
        previous = previous_checkpoint_path(self.checkpoint_path)
        # the newest checkpoint moves to `previous`, unless this run fell back to `previous` (it is damaged)
        keep_previous = None if self.last_checkpoint == previous else previous
        save_from_rank_zero(self.checkpoint_path, state, keep_previous, self.world_size, self.device)
        self.last_checkpoint = self.checkpoint_path

    def _say(self, message: str) -> None:
        """Print ``message`` on rank 0."""
        if self.rank == 0:
            print(message, flush=True)

    def _resume(self, policy: str, path: Path | None) -> None:
        """Load the checkpoint ``path``, or the one ``policy`` finds in ``output_dir``, and set :attr:`step` from it.

        See :mod:`~contrastive_seq.training.resume` for the policy and what a checkpoint must share with the run.
        """
        found = (path, load_checkpoint(path)) if path is not None else find_checkpoint(policy, self.checkpoint_path)
        if found is not None:
            path, state = found
            check_settings(path, state, plain_config(self.config), self.run_settings)
            parts, config = self._parts(), self.config
            self.step, self.skipped_steps = restore_run(path, state, parts, config.max_steps, self.rank, config.seed)
            self.last_checkpoint = path
        check_ranks_agree(self.step, self.world_size, self.device)
        if found is not None and self.step < self.config.max_steps:
            self._say(f"resuming from {path} at step {self.step} of {self.config.max_steps}")
