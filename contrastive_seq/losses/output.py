"""The value every loss and every method's training step returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """A scalar loss to back-propagate plus its named parts for logging.

    Attributes:
        loss: scalar tensor with a graph.
        parts: detached scalar tensors (accuracy of picking the positive,
            alignment, uniformity, temperature, ...), keyed by name.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = {name: value.detach() for name, value in self.parts.items()}

    def stacked(self) -> tuple[list[str], torch.Tensor]:
        """Names ``["loss", *parts]`` and their detached float32 values as one tensor ``(1 + parts,)``."""
        names = ["loss", *self.parts]
        return names, torch.stack([self.loss.detach().float(), *(p.float() for p in self.parts.values())])

    def scalars(self) -> dict[str, float]:
        """The loss and its parts as Python floats (one device sync)."""
        names, values = self.stacked()
        return dict(zip(names, values.tolist()))


def mean_output(first: LossOutput, second: LossOutput) -> LossOutput:
    """The average of two losses and of each of their parts (two directions of a symmetric method)."""
    parts = {name: (value + second.parts[name]) / 2 for name, value in first.parts.items()}
    return LossOutput((first.loss + second.loss) / 2, parts)
