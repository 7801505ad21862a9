"""The method contract: a module that turns a batch into a loss. No method owns a training loop."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput


@dataclass(frozen=True)
class ParamGroup:
    """Parameters a method optimises with their own learning rate and weight decay.

    A parameter belongs to the group when its name in ``method.named_parameters()``
    starts with one of ``prefixes``. Parameters no group claims form the group
    ``"default"`` with the run's settings. In every group, parameters of one
    dimension (biases, norm scales and shifts) get no weight decay unless
    ``TrainerConfig.decay_norms_and_biases`` is true, and LARS does not adapt
    their rate.

    Args:
        name: the group's name, used in errors and logs.
        prefixes: parameter-name prefixes, e.g. ``("predictor.",)``.
        lr_scale: the group's rate is ``lr_scale * TrainerConfig.lr`` (> 0).
        weight_decay: ``None``: ``TrainerConfig.weight_decay``; else this (>= 0).
        scheduled: ``False`` keeps the group's rate at ``lr_scale * lr`` all run
            (SimSiam's predictor); ``True`` follows the run's warm-up and decay.
    """

    name: str
    prefixes: tuple[str, ...]
    lr_scale: float = 1.0
    weight_decay: float | None = None
    scheduled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ParamGroup.name must be a non-empty str, got {self.name!r}")
        where = f"ParamGroup {self.name!r}"
        if isinstance(self.prefixes, str) or not self.prefixes or not all(
            isinstance(prefix, str) and prefix for prefix in self.prefixes
        ):
            raise ValueError(f"{where}: prefixes must be a non-empty tuple of non-empty str, got {self.prefixes!r}")
        if not _positive(self.lr_scale):
            raise ValueError(f"{where}: lr_scale must be a positive finite number, got {self.lr_scale!r}")
        if self.weight_decay is not None and not (_positive(self.weight_decay) or self.weight_decay == 0):
            raise ValueError(f"{where}: weight_decay must be None or a finite number >= 0, got {self.weight_decay!r}")
        if not isinstance(self.scheduled, bool):
            raise ValueError(f"{where}: scheduled must be a bool, got {self.scheduled!r}")

    def claims(self, parameter_name: str) -> bool:
        """Whether the parameter called ``parameter_name`` belongs to this group."""
        return parameter_name.startswith(self.prefixes)


def check_freeze_steps(name: str, value: object) -> int:
    """``value``, the number of first steps a part of a method stays frozen, checked: a non-negative int.

    Raises:
        ValueError: naming ``name`` when ``value`` is not an int >= 0.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def drop_gradients(module: nn.Module) -> None:
    """Clear ``module``'s gradients in :meth:`Method.before_optimizer_step`: this optimiser step leaves it as it is."""
    for parameter in module.parameters():
        parameter.grad = None


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


class Method(nn.Module, abc.ABC):
    """A contrastive or self-supervised method: encoders, heads and a loss.

    ``forward(batch)`` is ``training_step(batch)``, so the Trainer calls the
    (possibly DDP-wrapped) module directly and DDP sees every forward pass.
    Each step the Trainer runs, in order: ``training_step`` (forward),
    backward, :meth:`before_optimizer_step` (gradients at their true scale),
    gradient clipping, the optimiser step, :meth:`after_step`. Before the
    first step it calls :meth:`set_total_steps` with the run's length and
    builds the optimiser from :meth:`param_groups`.

    Example, a SimSiam-like method whose predictor keeps a fixed learning rate
    and whose EMA copy's momentum ramps over the whole run (no Trainer edit)::

        import torch.nn.functional as F
        from torch import nn

        from contrastive_seq.losses.output import LossOutput
        from contrastive_seq.methods.base import Method, ParamGroup
        from contrastive_seq.models.ema import EMACopy
        from contrastive_seq.training import Trainer, TrainerConfig

        class Siamese(Method):
            def __init__(self, encoder: nn.Module, dim: int):
                super().__init__()
                self.encoder, self.predictor = encoder, nn.Linear(dim, dim)
                self.target = EMACopy(encoder, 0.99, 1.0)  # total_steps=None: the run's length

            def training_step(self, batch):
                views = batch["views"]  # (2, N, C, H, W)
                p = self.predictor(self.encoder(views[0]))
                z = self.target(views[1])
                return LossOutput(-F.cosine_similarity(p, z).mean())

            def param_groups(self):
                return [ParamGroup("predictor", ("predictor.",), scheduled=False)]

            def before_optimizer_step(self, step):
                if step < 10:  # freeze the predictor for the first 10 steps
                    for p in self.predictor.parameters():
                        p.grad = None

            def after_step(self, step):
                self.target.update(self.encoder, step)

            def embed(self, x):
                return self.encoder(x)

        # encoder: (N, C, H, W) -> (N, 64); data, sampler, views: e.g. an ArrayDataset,
        # AugmentationSampler(len(data)) and TransformedViews(augmentation)
        config = TrainerConfig(max_steps=500, batch_size=64, optimizer="lars", lr=0.2, weight_decay=1e-6)
        Trainer(Siamese(encoder, 64), config, data, sampler, views).fit()
    """

    total_steps: int | None = None
    """The run's length in optimiser steps, set by :meth:`set_total_steps` (``None`` before a Trainer sets it)."""

    @abc.abstractmethod
    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Compute the loss of one batch (the dict a views step built)."""

    def param_groups(self) -> list[ParamGroup]:
        """Parameter groups with their own rate and weight decay. Default: none (one group, the run's settings)."""
        return []

    def set_total_steps(self, total_steps: int) -> None:
        """Learn the run's length: stores :attr:`total_steps` and passes it to every submodule with a
        ``set_total_steps`` (an :class:`~contrastive_seq.models.ema.EMACopy` built without a length ramps over it)."""
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        for module in self.modules():
            if module is not self and callable(getattr(module, "set_total_steps", None)):
                module.set_total_steps(total_steps)

    def before_optimizer_step(self, step: int) -> None:
        """Edit gradients after backward and before the optimiser step ``step`` (freeze a layer, clip a head).

        Gradients are unscaled (fp16) here. Default: nothing.
        """

    def after_step(self, step: int) -> None:
        """Update non-gradient state after the optimiser step ``step`` (EMA, queues). Default: nothing."""

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation for downstream use: ``(N, ...) -> (N, dim)``."""

    def feature_networks(self) -> dict[str, nn.Module]:
        """Networks after the encoder whose outputs are representations too, by name (CPC: ``context``); default: none.

        An exported encoder keeps them (see :meth:`~contrastive_seq.experiments.sections.MethodConfig.feature_networks`).
        """
        return {}

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        return self.training_step(batch)
