"""The method contract: a module that turns a batch into a loss. No method owns a training loop."""

from __future__ import annotations

import abc

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput


class Method(nn.Module, abc.ABC):
    """A contrastive or self-supervised method: encoders, heads and a loss.

    ``forward(batch)`` is ``training_step(batch)``, so the Trainer calls the
    (possibly DDP-wrapped) module directly and DDP sees every forward pass.
    """

    @abc.abstractmethod
    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Compute the loss of one batch (the dict a views step built)."""

    def after_step(self, step: int) -> None:
        """Update non-gradient state after the optimiser step ``step`` (EMA, queues). Default: nothing."""

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation for downstream use: ``(N, ...) -> (N, dim)``."""

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        return self.training_step(batch)
