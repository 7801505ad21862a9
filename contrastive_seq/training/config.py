"""The Trainer's settings, :class:`TrainerConfig`, checked when built, without importing torch.

A config file's ``train`` section is a :class:`TrainerConfig`; this module
imports only the standard library, so that reading and checking a config
(``contrastive-seq config``, a config error) stays fast. The training loop
that reads it is :class:`~contrastive_seq.training.trainer.Trainer`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from contrastive_seq.training.schedule import SCHEDULES

OPTIMIZERS = ("adamw", "sgd", "lars")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
NONFINITE_ACTIONS = ("stop", "skip")
RESUME_POLICIES = ("auto", "never", "must")
# the files the Trainer writes into output_dir (evaluate, export and embed look for the checkpoint without torch)
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
MAX_SEED = 2**63 - 1  # torch.manual_seed and NumPy's SeedSequence take any int in [0, 2**63)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainerConfig:
    """Everything the training loop needs besides the method and its data.

    Args:
        max_steps: optimiser steps in the whole run (a resumed run continues to it).
        batch_size: pairs per rank and step; the global batch is
            ``batch_size * world_size``.
        optimizer: ``"adamw"``, ``"sgd"`` (with ``momentum``) or ``"lars"`` (SGD
            with momentum and layer-wise adaptive rates,
            :class:`~contrastive_seq.training.optimizers.LARS`).
        lr: base learning rate (a method's parameter groups may scale it).
        weight_decay: decoupled (AdamW) or L2 (SGD, LARS) weight decay on the
            trainable weights (biases and norms too with ``decay_norms_and_biases``).
        momentum: SGD and LARS momentum in ``[0, 1)``; unused by AdamW.
        trust_coefficient: LARS's eta (> 0); unused by the others.
        decay_norms_and_biases: also decay (and LARS-adapt) one-dimensional
            parameters; by default they get neither (SimCLR, BYOL).
        warmup_steps: steps of linear warmup, in ``[0, max_steps]``.
        schedule: ``"cosine"`` (decay to ``min_lr_fraction * lr``) or ``"constant"``,
            after warmup (see :func:`contrastive_seq.training.schedule.lr_factor`).
        min_lr_fraction: final learning rate as a fraction of ``lr``, in ``[0, 1]``.
        grad_clip: ``None`` or the maximum total gradient norm.
        precision: ``"fp32"``; ``"bf16"`` (autocast, CPU or a CUDA device that
            supports it); ``"fp16"`` (autocast with a gradient scaler, CUDA only).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``
            (under torchrun each rank takes ``cuda:LOCAL_RANK``).
        seed: base seed of every random stream (non-negative).
        num_workers: DataLoader worker processes building batches (0: in the main process).
        log_every: write metrics every this many steps (and at the last step).
        eval_every: run the ``evaluate`` callback every this many steps;
            ``None``: only at the end.
        checkpoint_every: save a checkpoint every this many steps; ``None``:
            only at the end. Needs ``output_dir``.
        output_dir: where ``checkpoint.pt`` (and the one before it,
            ``checkpoint.previous.pt``), ``metrics.jsonl`` and ``tensorboard/``
            go (it must be shared by all ranks); ``None`` writes nothing and
            never resumes. It must not be a file.
        resume: what :meth:`~contrastive_seq.training.trainer.Trainer.fit` does with a checkpoint in ``output_dir``:
            ``"auto"`` continues from it when there is one; ``"never"`` starts
            at step 0 without reading it (the first save moves it to
            ``checkpoint.previous.pt``); ``"must"`` continues from it and fails
            when there is none.
        collective_timeout: seconds a collective (all-reduce, gather, barrier)
            may wait for the other ranks before the run ends with a
            :class:`~contrastive_seq.distributed.PeerFailureError` naming the
            ranks that no longer answer (a frozen or lost peer).
        sync_batchnorm: convert BatchNorm layers to SyncBatchNorm when running
            on more than one rank (CUDA only).
        progress: show a tqdm progress bar on rank 0.
        on_nonfinite: what a NaN or infinite loss (on any rank) does:
            ``"stop"`` raises :class:`~contrastive_seq.training.trainer.NonFiniteLossError` (the step, its pairs
            and the last good checkpoint) before any gradient is computed;
            ``"skip"`` drops the step on every rank (no backward, no optimiser
            step, no ``after_step``; the schedule still advances; buffers the
            forward pass changed, such as batch-norm running statistics, are
            restored), warns, and counts it in :attr:`~contrastive_seq.training.trainer.Trainer.skipped_steps`,
            logged as ``skipped_steps``.

    Raises:
        ValueError: naming the field, for any value out of range, at construction.
    """

    max_steps: int = 1000
    batch_size: int = 256
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    trust_coefficient: float = 0.001
    decay_norms_and_biases: bool = False
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_fraction: float = 0.0
    grad_clip: float | None = None
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    log_every: int = 50
    eval_every: int | None = None
    checkpoint_every: int | None = 500
    output_dir: str | os.PathLike | None = None
    sync_batchnorm: bool = False
    progress: bool = True
    on_nonfinite: str = "stop"
    resume: str = "auto"
    collective_timeout: float = 300.0

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ValueError(f"TrainerConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("max_steps", "batch_size", "log_every"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "a positive int")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                fail(name, "None or a positive int")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            fail("seed", "an int in [0, 2**63 - 1] (what torch.manual_seed accepts)")
        if not _is_int(self.num_workers) or self.num_workers < 0:
            fail("num_workers", "a non-negative int")
        if not _is_number(self.collective_timeout) or self.collective_timeout <= 0:
            fail("collective_timeout", "a positive finite number of seconds")
        if not _is_int(self.warmup_steps) or not 0 <= self.warmup_steps <= self.max_steps:
            fail("warmup_steps", f"an int in [0, max_steps={self.max_steps}]")
        if not _is_number(self.lr) or self.lr <= 0:
            fail("lr", "a positive finite number")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            fail("weight_decay", "a non-negative finite number")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            fail("momentum", "a number in [0, 1)")
        if not _is_number(self.trust_coefficient) or self.trust_coefficient <= 0:
            fail("trust_coefficient", "a positive finite number")
        if not _is_number(self.min_lr_fraction) or not 0 <= self.min_lr_fraction <= 1:
            fail("min_lr_fraction", "a number in [0, 1]")
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip <= 0):
            fail("grad_clip", "None or a positive finite number")
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
            ("on_nonfinite", NONFINITE_ACTIONS),
            ("resume", RESUME_POLICIES),
        ):
            if getattr(self, name) not in choices:
                fail(name, f"one of {choices}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError(
                "TrainerConfig.precision='fp16' needs a CUDA device (it relies on CUDA's gradient scaler); "
                "use precision='bf16' or 'fp32' with device='cpu'"
            )
        for name in ("sync_batchnorm", "progress", "decay_norms_and_biases"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "a bool")
        if self.output_dir is not None and (
            not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir)
        ):
            fail("output_dir", "None or a path")
        if self.output_dir is not None and Path(self.output_dir).is_file():
            fail("output_dir", "a directory (created when missing), not a file")
