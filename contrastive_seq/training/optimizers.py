"""The optimiser of a run: the method's parameter groups, AdamW / SGD / LARS, and each group's schedule.

:func:`build_optimizer` turns a method's :class:`~contrastive_seq.methods.base.ParamGroup`
list into torch parameter groups: ``"default"`` (every trainable parameter no
group claims; first, so its rate is the one the Trainer logs), then each
named group, each split into its weights and its
one-dimensional parameters (biases and norm scales, ``"<name>/no_decay"``: no
weight decay and no LARS adaptation unless ``decay_norms_and_biases``). Empty
groups are left out. :func:`build_scheduler` gives each group the run's
warm-up and decay, or a constant rate for a group with ``scheduled=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

from contrastive_seq.methods.base import Method, ParamGroup
from contrastive_seq.training.config import OPTIMIZERS
from contrastive_seq.training.schedule import lr_lambda


class OptimizerSettings(Protocol):
    """The fields of :class:`~contrastive_seq.training.config.TrainerConfig` the optimiser reads."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    trust_coefficient: float
    decay_norms_and_biases: bool
    max_steps: int
    warmup_steps: int
    schedule: str
    min_lr_fraction: float


class LARS(torch.optim.Optimizer):
    """SGD with layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017), as SimCLR and BYOL train.

    For each parameter ``w`` with gradient ``g`` in a group with ``lars_adapt``:

        g <- g + weight_decay * w
        g <- trust_coefficient * ||w|| / (||g_raw|| + weight_decay * ||w|| + eps) * g   (when ||w||, ||g_raw|| > 0)
        v <- momentum * v + g;   w <- w - lr * v

    where ``g_raw`` is the gradient before weight decay (eq. 6 of the paper).
    Groups without ``lars_adapt`` (biases and norms, by :func:`build_optimizer`)
    take the plain SGD-with-momentum step on ``g + weight_decay * w``.

    Args:
        params: parameters or parameter-group dicts (a group may set ``lars_adapt``, default ``True``).
        lr: learning rate (> 0).
        momentum: in ``[0, 1)``.
        weight_decay: L2 weight decay (>= 0).
        trust_coefficient: eta (> 0).
        eps: added to the denominator of the trust ratio.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ):
        for name, value, low in (("lr", lr, 0.0), ("trust_coefficient", trust_coefficient, 0.0)):
            if not value > low:
                raise ValueError(f"LARS {name} must be > {low}, got {value!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS momentum must lie in [0, 1), got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"LARS weight_decay must be >= 0, got {weight_decay!r}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "lars_adapt": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay = group["weight_decay"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad.add(parameter, alpha=decay) if decay else parameter.grad.clone()
                if group["lars_adapt"]:
                    weight_norm, gradient_norm = parameter.norm(), parameter.grad.norm()
                    denominator = gradient_norm + decay * weight_norm + group["eps"]
                    ratio = group["trust_coefficient"] * weight_norm / denominator
                    gradient.mul_(torch.where((weight_norm > 0) & (gradient_norm > 0), ratio, 1.0))
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = gradient
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(gradient)
                parameter.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(method: Method, config: OptimizerSettings) -> list[dict[str, Any]]:
    """Torch parameter-group dicts for ``method``'s trainable parameters (see the module docstring).

    Each dict holds ``params``, ``name``, ``lr``, ``weight_decay``, ``scheduled``
    and ``lars_adapt``.

    Raises:
        ValueError: naming the group, for a group that claims no trainable
            parameter, two groups of one name, or a parameter two groups claim.
        TypeError: when ``param_groups()`` does not return ParamGroups.
    """
    groups = list(method.param_groups())
    for group in groups:
        if not isinstance(group, ParamGroup):
            raise TypeError(
                f"{type(method).__name__}.param_groups() must return ParamGroup objects, got {type(group).__name__}"
            )
    names = [group.name for group in groups]
    if len(set(names)) != len(names) or "default" in names:
        raise ValueError(f"{type(method).__name__}.param_groups() names must be unique and not 'default', got {names}")
    members: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in ["default", *names]}
    for parameter_name, parameter in method.named_parameters():
        if not parameter.requires_grad:
            continue
        claimed = [group.name for group in groups if group.claims(parameter_name)]
        if len(claimed) > 1:
            raise ValueError(f"parameter {parameter_name!r} is claimed by the ParamGroups {claimed}; give it one group")
        members[claimed[0] if claimed else "default"].append((parameter_name, parameter))
    for group in groups:
        if not members[group.name]:
            examples = ", ".join(name for name, _ in list(method.named_parameters())[:4])
            raise ValueError(
                f"ParamGroup {group.name!r} of {type(method).__name__} names no trainable parameter "
                f"(prefixes {group.prefixes}); parameter names look like: {examples}"
            )
    settings = {group.name: group for group in groups}
    torch_groups = []
    for name, named in members.items():
        group = settings.get(name)  # None: the default group, the run's own settings
        decay = config.weight_decay if group is None or group.weight_decay is None else group.weight_decay
        lr = config.lr * (1.0 if group is None else group.lr_scale)
        scheduled = group is None or group.scheduled
        weights = [p for _, p in named if p.dim() > 1 or config.decay_norms_and_biases]
        flat = [p for _, p in named if p.dim() <= 1 and not config.decay_norms_and_biases]
        for suffix, params, group_decay, adapt in (("", weights, decay, True), ("/no_decay", flat, 0.0, False)):
            if params:
                torch_groups.append(
                    {
                        "params": params,
                        "name": name + suffix,
                        "lr": lr,
                        "weight_decay": group_decay,
                        "scheduled": scheduled,
                        "lars_adapt": adapt,
                    }
                )
    return torch_groups


def build_optimizer(method: Method, config: OptimizerSettings) -> torch.optim.Optimizer:
    """``config.optimizer`` (``"adamw"``, ``"sgd"`` with momentum, ``"lars"``) over :func:`parameter_groups`."""
    groups = parameter_groups(method, config)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "lars":
        return LARS(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            trust_coefficient=config.trust_coefficient,
        )
    raise ValueError(f"TrainerConfig.optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimizerSettings) -> torch.optim.lr_scheduler.LambdaLR:
    """One multiplier per group: the run's warm-up and decay, or 1 for a group with ``scheduled=False``."""
    scheduled = lr_lambda(config.max_steps, config.warmup_steps, config.schedule, config.min_lr_fraction)
    constant = lr_lambda(config.max_steps, 0, "constant")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [scheduled if group["scheduled"] else constant for group in optimizer.param_groups]
    )
