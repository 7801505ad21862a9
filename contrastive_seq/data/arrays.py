"""An in-memory dataset of samples with optional integer labels."""

from __future__ import annotations

import torch


def random_split(n: int, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded random split of ``n`` samples: ``(first, second)``.

    The second part holds ``max(1, round(fraction * n))`` samples.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = n - max(1, round(fraction * n))
    return order[:cut], order[cut:]


class ArrayDataset:
    """Samples held in one tensor, indexed by index tensors.

    Args:
        inputs: ``(n, ...)`` samples (images ``(n, channels, height, width)``).
        labels: optional ``(n,)`` integer labels (used by evaluation and SupCon).
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor | None = None):
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or inputs.shape[0] == 0:
            raise ValueError(f"inputs must be a tensor of shape (n, ...) with n > 0, got {getattr(inputs, 'shape', inputs)}")
        if inputs.is_floating_point() and not torch.isfinite(inputs).all():
            raise ValueError("inputs contains NaN or infinite values")
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.shape != (inputs.shape[0],):
                raise ValueError(f"labels must have shape ({inputs.shape[0]},) to match inputs, got {tuple(labels.shape)}")
            if labels.dtype.is_floating_point:
                raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
            labels = labels.long()
        self.inputs = inputs
        self.labels = labels

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """Samples at ``index`` (any shape), stacked: ``index.shape + sample shape``."""
        return self.inputs[index]

    def split(self, fraction: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        """A seeded random split into ``(1 - fraction, fraction)`` parts (see :func:`random_split`)."""
        first, second = random_split(len(self), fraction, seed)
        pick = (lambda rows: None) if self.labels is None else (lambda rows: self.labels[rows])
        return ArrayDataset(self.inputs[first], pick(first)), ArrayDataset(self.inputs[second], pick(second))
