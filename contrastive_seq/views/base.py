"""The views step: turn a :class:`PairIndex` into model inputs."""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch

from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.seeding import derive_seed, forked_random_state


def augment_views(
    samples: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator
) -> torch.Tensor:
    """``transform`` applied to every sample of ``samples (V, N, ...)``, stacked to ``(V, N, ...)``.

    ``transform`` draws from the global random streams (torchvision's
    transforms from torch's); it runs inside
    :func:`~contrastive_seq.seeding.forked_random_state` seeded by one draw
    from ``generator``, so the result depends only on ``generator`` and the
    global streams are left as they were.
    """
    seed = derive_seed(int(torch.randint(2**62, (1,), generator=generator)))
    with forked_random_state(seed):
        return torch.stack([torch.stack([transform(s) for s in view]) for view in samples])


class Views(abc.ABC):
    """``views(dataset, pairs, generator) -> batch``: a dict of tensors for a method's ``training_step``."""

    @abc.abstractmethod
    def __call__(self, dataset: object, pairs: PairIndex, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Build one batch; randomness only from ``generator``."""


class TransformedViews(Views):
    """One view per index column: the reference, then each positive, each through ``transform``.

    With an augmentation sampler the columns repeat one index, so the views
    are independent augmentations of the same sample; with a same-class
    sampler they are augmentations of different samples of one class.

    ``transform`` maps one sample to one view; see :func:`augment_views` for
    how its randomness depends only on ``generator``.

    Returns ``{"views": (V, N, ...), "index": (N,)}`` plus ``"labels": (N,)``
    when the sampler gave labels or the dataset has them.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.transform = transform

    def __call__(self, dataset: object, pairs: PairIndex, generator: torch.Generator) -> dict[str, torch.Tensor]:  # noqa: D102
        columns = torch.cat([pairs.reference.unsqueeze(1), pairs.positive], dim=1)
        samples = dataset[columns.T]  # (V, N, ...)
        if self.transform is not None:
            samples = augment_views(samples, self.transform, generator)
        batch = {"views": samples, "index": pairs.reference}
        labels = pairs.labels if pairs.labels is not None else getattr(dataset, "labels", None)
        if labels is not None:
            batch["labels"] = labels if pairs.labels is not None else labels[pairs.reference]
        return batch
