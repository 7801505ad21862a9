"""The sampler contract: what to pair, as index tensors.

A sampler never touches data: it draws indices of reference samples, their
positives, optional negatives and optional labels (same label = positive, a
multi-positive mask). All randomness comes from the ``torch.Generator`` passed
in, so a draw is reproducible from the generator's seed alone.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields

import torch


def _check_index(name: str, value: object, dims: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != torch.long:
        raise TypeError(f"{name} must be an int64 index tensor, got dtype {value.dtype}")
    if value.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, got shape {tuple(value.shape)}")
    return value


@dataclass(frozen=True)
class PairIndex:
    """Indices of one batch of pairs.

    Attributes:
        reference: ``(N,)`` indices of the reference (anchor) samples.
        positive: ``(N, P)`` indices of P positives per reference (P >= 1;
            for augmentation views these repeat ``reference``: the positive is
            another view of the same sample).
        negative: ``None`` (in-batch negatives), ``(N, K)`` negatives per
            reference, or ``(M,)`` negatives shared by the whole batch.
        labels: ``None`` or ``(N,)`` int64; references with equal labels are
            positives of each other (SupCon's multi-positive mask).
    """

    reference: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = _check_index("reference", self.reference, (1,)).shape[0]
        positive = _check_index("positive", self.positive, (2,))
        if positive.shape[0] != n or positive.shape[1] < 1:
            raise ValueError(f"positive must have shape ({n}, P) with P >= 1, got {tuple(positive.shape)}")
        if self.negative is not None:
            negative = _check_index("negative", self.negative, (1, 2))
            if negative.dim() == 2 and negative.shape[0] != n:
                raise ValueError(f"negative of shape (N, K) must have N = {n}, got {tuple(negative.shape)}")
        if self.labels is not None:
            labels = _check_index("labels", self.labels, (1,))
            if labels.shape[0] != n:
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")

    def __len__(self) -> int:
        return self.reference.shape[0]

    def shard(self, rank: int, world_size: int) -> PairIndex:
        """This rank's contiguous share of the rows (shared ``(M,)`` negatives are split too).

        The global batch size must be divisible by ``world_size``.
        """
        n = len(self)
        if n % world_size:
            raise ValueError(f"batch of {n} pairs cannot be split evenly over world_size={world_size} ranks")
        rows = slice(rank * n // world_size, (rank + 1) * n // world_size)
        sharded = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and field.name == "negative" and value.dim() == 1:
                m = value.shape[0]
                value = value[rank * m // world_size : (rank + 1) * m // world_size]
            elif value is not None:
                value = value[rows]
            sharded[field.name] = value
        return PairIndex(**sharded)


class Sampler(abc.ABC):
    """Draws :class:`PairIndex` batches over a dataset of ``num_items`` samples.

    Subclasses implement :meth:`draw`; :meth:`sample` checks the arguments.
    Cost per draw must stay O(batch * log n) or better.
    """

    num_items: int

    @property
    def max_batch_size(self) -> int | None:
        """The largest batch this sampler can draw (``None``: no limit); a sampler drawing without replacement
        cannot draw more pairs than it has samples."""
        return None

    def sample(self, batch_size: int, generator: torch.Generator) -> PairIndex:
        """Draw one batch of ``batch_size`` pairs using only ``generator``'s randomness."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return self.draw(batch_size, generator)

    @abc.abstractmethod
    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:
        """Draw a batch; arguments are already checked."""
