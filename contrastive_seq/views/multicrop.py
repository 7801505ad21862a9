"""Several differently augmented crops of each image: BYOL's asymmetric views and DINO's multi-crop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.views.base import TransformedViews, Views, augment_views

Transform = Callable[[torch.Tensor], torch.Tensor]


class MultiCropViews(Views):
    """Global crops, each with its own transform, plus ``n_local`` local crops with one shared transform.

    Every crop is of the reference image: the sampler's positive columns must
    repeat the reference (an :class:`~contrastive_seq.sampling.AugmentationSampler`).
    With two global transforms and no local crops these are BYOL's asymmetric
    views; with ``n_local > 0`` they are DINO's multi-crop, the local crops at
    their own (smaller) resolution.

    Returns ``{"views": (G, N, C, H, W), "index": (N,)}``, plus
    ``"local_views": (L, N, C, h, w)`` when ``n_local > 0`` and ``"labels": (N,)``
    when the dataset has labels. Randomness comes only from the generator.

    Args:
        global_transforms: one transform per global crop, all giving one size ``(C, H, W)``.
        local_transform: the transform of every local crop, ``(C, h, w)``; needed when ``n_local > 0``.
        n_local: number of local crops L (>= 0).
    """

    def __init__(
        self,
        global_transforms: Sequence[Transform],
        local_transform: Transform | None = None,
        n_local: int = 0,
    ):
        if len(global_transforms) < 1 or not all(callable(t) for t in global_transforms):
            raise ValueError(f"global_transforms must be a non-empty sequence of callables, got {global_transforms!r}")
        if isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 0:
            raise ValueError(f"n_local must be an int >= 0, got {n_local!r}")
        if n_local > 0 and not callable(local_transform):
            raise ValueError(f"local_transform must be a callable when n_local={n_local} > 0, got {local_transform!r}")
        self.global_transforms = tuple(global_transforms)
        self.local_transform = local_transform
        self.n_local = n_local
        self._samples = TransformedViews()

    def __call__(  # noqa: D102
        self, dataset: object, pairs: PairIndex, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not torch.equal(pairs.positive, pairs.reference.unsqueeze(1).expand_as(pairs.positive)):
            raise ValueError(
                "MultiCropViews crops the reference image only, so pairs.positive must repeat pairs.reference "
                "(use an AugmentationSampler)"
            )
        batch = self._samples(dataset, pairs, generator)
        images = batch["views"][:1]  # (1, N, C, H, W): the references
        batch["views"] = torch.cat([augment_views(images, t, generator) for t in self.global_transforms])
        if self.n_local > 0:
            local_images = images.expand(self.n_local, *images.shape[1:])
            batch["local_views"] = augment_views(local_images, self.local_transform, generator)
        return batch
