"""A collapse monitor: how spread out L2-normalised embeddings are, per dimension.

For embeddings z (N, d), normalise each row to unit length and take the
standard deviation of every dimension over the rows, then their mean:

    s = mean_j std_i( z_ij / ||z_i|| )

If the embeddings collapse to one point, s = 0. If they spread uniformly
over the unit sphere, every coordinate has variance 1/d, so s ≈ 1/sqrt(d)
(the reference used to detect collapse in SimSiam, Chen & He 2021). The
ratio s·sqrt(d) thus reads 0 for full collapse and about 1 for a healthy
spread; a value that falls during training warns of (dimensional) collapse.

The Trainer also asks this module whether a run is degenerate from the
start: :func:`input_warnings` on its first batch and :class:`LossPlateau`
on its losses after warm-up, and :class:`EmbeddingSpread` at every logged
step, on the embeddings its method feeds the loss; :class:`RunWatch` puts
the three together for one run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F


def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """``s``: mean over dimensions of the standard deviation of the L2-normalised rows of ``embeddings (N, d)``.

    Raises:
        ValueError: for anything but a floating tensor ``(N >= 2, d >= 1)``.
    """
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a floating-point tensor, got {type(embeddings).__name__}")
    if embeddings.dim() != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
        raise ValueError(f"embeddings must have shape (N >= 2, d >= 1), got {tuple(embeddings.shape)}")
    unit = F.normalize(embeddings.detach().double(), dim=1)
    return float(unit.std(dim=0).mean())


def collapse_scores(embeddings: torch.Tensor) -> dict[str, float]:
    """``{"embedding_std": s, "embedding_std_ratio": s·sqrt(d)}`` for ``embeddings (N, d)``."""
    std = normalized_embedding_std(embeddings)
    return {"embedding_std": std, "embedding_std_ratio": std * math.sqrt(embeddings.shape[1])}


HUGE_INPUT = 1e6  # inputs beyond this magnitude saturate an encoder's first layer: standardise them


def input_warnings(batch: Mapping[str, Any]) -> list[str]:
    """What makes a batch's floating inputs unlearnable: constant features, or values beyond :data:`HUGE_INPUT`.

    Each floating tensor of ``batch`` (e.g. ``views (V, N, ...)``, ``windows (N, channels, time)``) is seen
    as rows of its last dimension, its features; integer tensors (labels, indices) are not inputs.

    Returns:
        one message per offending entry, naming its key.
    """
    messages = []
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() < 2:
            continue
        features = value.detach().reshape(-1, value.shape[-1]).double()
        low, high = features.amin(0), features.amax(0)
        if bool((low == high).all()):
            messages.append(
                f"input {key!r} {tuple(value.shape)}: every feature is constant across the batch "
                f"(values from {float(low.min()):g} to {float(high.max()):g}); nothing distinguishes one sample "
                "from another, so the embedding will be constant"
            )
        elif max(float(low.min().abs()), float(high.max().abs())) > HUGE_INPUT:
            largest = max(float(low.min().abs()), float(high.max().abs()))
            messages.append(
                f"input {key!r} {tuple(value.shape)} reaches {largest:.3g} in magnitude; an encoder saturates on "
                "such values (its embedding can become constant): standardise the features"
            )
    return messages


def judged_window(warmup_steps: int, max_steps: int) -> tuple[int, int]:
    """The steps (1-based, inclusive) in which a run must show it learns: ``max(5, min(50, max_steps // 10))``
    steps right after warm-up. Embedding collapse is judged from the step after them on."""
    first = warmup_steps + 1
    return first, first + max(5, min(50, max_steps // 10)) - 1


class LossPlateau:
    """Detects a loss that stays at its starting value after warm-up: a model that learns nothing.

    A contrastive loss whose embeddings carry no information (constant inputs, a
    collapsed encoder) sits at its chance value, ``ln(candidates)``, from the
    first step on; healthy training moves it by more than 1 % soon after
    warm-up. The first step's loss is taken as that reference.

    Args:
        warmup_steps: steps of learning-rate warm-up, not judged.
        max_steps: length of the run (see :func:`judged_window`).
        tolerance: relative distance from the reference that counts as "not moved" (1 %).
    """

    def __init__(self, warmup_steps: int, max_steps: int, tolerance: float = 0.01):
        self.first, self.last = judged_window(warmup_steps, max_steps)
        self.tolerance = tolerance
        self.reference: float | None = None
        self.moved = False

    def observe(self, step: int, loss: float) -> str | None:
        """Record the loss of completed ``step`` (1-based); returns a message once, at the window's last step, when it never moved."""
        if self.reference is None:
            self.reference = loss
        if self.moved or not self.first <= step <= self.last:
            return None
        if not math.isfinite(loss) or abs(loss - self.reference) > self.tolerance * abs(self.reference):
            self.moved = True
            return None
        if step < self.last:
            return None
        return (
            f"the loss stayed within {self.tolerance:.0%} of its first value {self.reference:.4g} from step "
            f"{self.first} to {self.last} (after warm-up): the model is not learning; a contrastive loss stuck there "
            "is at its chance value ln(candidates): look for constant or unscaled inputs, a collapsed embedding "
            "or a learning rate that is too low"
        )


COLLAPSED_RATIO = 0.05  # embedding_std_ratio below this: the embeddings sit (nearly) at one point


class EmbeddingSpread:
    """Reads :func:`collapse_scores` of what a method feeds its loss, during the forward passes it watches.

    While :meth:`watching`, the first tensor argument of every call of the
    method's outermost loss modules (those defined in ``contrastive_seq.losses``:
    a query ``(N, d)``, views ``(V, N, d)``, image embeddings) is taken as
    embeddings ``(rows, d)`` and its ``embedding_std_ratio`` recorded.

    Args:
        method: the module whose losses are watched.
    """

    def __init__(self, method: torch.nn.Module):
        losses = {name: module for name, module in method.named_modules() if _is_loss(module)}
        self.losses = [
            module for name, module in losses.items() if not any(name.startswith(f"{outer}.") for outer in losses)
        ]
        self.ratios: list[float] = []

    def _record(self, module: torch.nn.Module, args: tuple) -> None:
        embeddings = next((value for value in args if isinstance(value, torch.Tensor)), None)
        if embeddings is None or not embeddings.is_floating_point() or embeddings.dim() < 2:
            return
        rows = embeddings.detach().reshape(-1, embeddings.shape[-1])
        if rows.shape[0] >= 2 and bool(torch.isfinite(rows).all()):
            self.ratios.append(collapse_scores(rows)["embedding_std_ratio"])

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Record the spread of the embeddings reaching the losses inside the ``with`` block."""
        self.ratios = []
        handles = [module.register_forward_pre_hook(self._record) for module in self.losses]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def collapsed(self, step: int) -> str | None:
        """A message when the spread recorded at ``step`` is below :data:`COLLAPSED_RATIO`, else ``None``."""
        if not self.ratios or min(self.ratios) >= COLLAPSED_RATIO:
            return None
        return (
            f"the embedding's spread has collapsed at step {step}: embedding_std_ratio {min(self.ratios):.3g} "
            f"(0: every sample at one point, about 1: spread over the sphere, warned below {COLLAPSED_RATIO})"
        )


def _is_loss(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("contrastive_seq.losses")


class RunWatch:
    """The degenerate-run checks of one fit, on the rank that reports (rank 0).

    :meth:`first_batch` checks the inputs of the fit's first step; at logged
    steps from the end of :func:`judged_window` on, the step runs
    :meth:`watching` the embedding spread, until a collapse was reported
    once; :meth:`after_step` returns that report and, for a run started at
    step 0, the :class:`LossPlateau` one.

    Args:
        method: the module whose losses are watched.
        start: completed steps when the fit begins (the plateau is judged only from step 0).
        warmup_steps, max_steps, log_every: the run's settings.
        enabled: whether this process checks anything (rank 0).
    """

    def __init__(
        self, method: torch.nn.Module, start: int, warmup_steps: int, max_steps: int, log_every: int, enabled: bool
    ):
        self.start, self.max_steps, self.log_every, self.enabled = start, max_steps, log_every, enabled
        self.plateau = LossPlateau(warmup_steps, max_steps) if start == 0 and enabled else None
        self.spread = EmbeddingSpread(method)
        self.spread_from = judged_window(warmup_steps, max_steps)[1] + 1  # an untrained encoder may not spread
        self.collapse_warned = False
        self._watched = False

    def first_batch(self, step: int, batch: Mapping[str, Any]) -> list[str]:
        """:func:`input_warnings` of ``batch`` when ``step`` (0-based) is the fit's first; else nothing."""
        return input_warnings(batch) if step == self.start and self.enabled else []

    def watching(self, step: int) -> AbstractContextManager[None]:
        """Where step ``step`` (0-based) runs: watching the embedding spread at a logged step, else nothing."""
        done = step + 1
        logged = done == self.max_steps or done % self.log_every == 0
        self._watched = logged and done >= self.spread_from and self.enabled and not self.collapse_warned
        return self.spread.watching() if self._watched else nullcontext()

    def after_step(self, step: int, loss: float) -> list[str]:
        """The collapse and plateau reports after step ``step`` (0-based) with ``loss``, each at most once."""
        messages = []
        if self._watched and (message := self.spread.collapsed(step + 1)):
            messages.append(message)
            self.collapse_warned = True
        if self.plateau is not None and (message := self.plateau.observe(step + 1, loss)):
            messages.append(message)
        return messages
