"""Learning-rate schedules as multipliers of the base rate, one value per optimiser step.

``lr_lambda(...)`` plugs into :class:`torch.optim.lr_scheduler.LambdaLR`, which
calls it with the 0-based index of the optimiser step about to be taken.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

SCHEDULES = ("cosine", "constant")


def lr_factor(
    step: int,
    *,
    max_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_fraction: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    With W = ``warmup_steps``, T = ``max_steps`` and m = ``min_lr_fraction``:

    - warmup, ``step < W``: ``(step + 1) / W``, a straight line that reaches the
      base rate at step W - 1 (no step is taken at rate zero);
    - ``"constant"`` after warmup: ``1``;
    - ``"cosine"`` after warmup: ``m + (1 - m) * (1 + cos(pi * p)) / 2`` with
      ``p = min(1, (step - W) / (T - W))``, so the rate falls from the base
      rate at step W to m at step T, just after the last step.

    Arguments are not checked here; :func:`lr_lambda` checks them once.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_fraction + (1.0 - min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_lambda(
    max_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_fraction: float = 0.0,
) -> Callable[[int], float]:
    """:func:`lr_factor` with its settings bound: ``step -> multiplier``, for ``LambdaLR``.

    The result is a ``functools.partial``, so ``LambdaLR.state_dict()`` stores
    nothing of it and a resumed run always follows the schedule it was given.

    Raises:
        ValueError: naming the argument, for a schedule other than ``"cosine"``
            or ``"constant"``, ``max_steps < 1``, ``warmup_steps`` outside
            ``[0, max_steps]`` or ``min_lr_fraction`` outside ``[0, 1]``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must be an int in [0, max_steps={max_steps}], got {warmup_steps!r}")
    if not 0.0 <= min_lr_fraction <= 1.0:
        raise ValueError(f"min_lr_fraction must lie in [0, 1], got {min_lr_fraction!r}")
    return functools.partial(
        lr_factor,
        max_steps=max_steps,
        warmup_steps=warmup_steps,
        schedule=schedule,
        min_lr_fraction=float(min_lr_fraction),
    )
