"""Paired modalities: the positive of an image is a caption of the same item (CLIP)."""

from __future__ import annotations

import torch

from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import PairIndex, Sampler


class PairedSampler(Sampler):
    """Distinct images per batch, each paired with one of its captions drawn uniformly.

    ``reference`` holds image indices, ``positive[:, 0]`` caption indices.
    A batch never repeats an image (a repeated item would be scored as its own
    negative by the in-batch CLIP loss). When an image has several captions,
    any of them is a positive: each draw picks one uniformly.

    Args:
        caption_image: ``(m,)`` index of the image each caption describes
            (:attr:`ImageTextDataset.caption_image`).
        num_images: number of images n; every image needs at least one caption.

    Setup sorts the captions by image once (O(m log m)) and keeps three ``(n,)``
    tables; when caption i describes image i (one caption per image, as in
    shards), it keeps none (a 10⁶-pair set saves 24 MB) and a draw's captions are
    its images. A draw costs O(batch log batch).
    """

    def __init__(self, caption_image: torch.Tensor, num_images: int):
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive int, got {num_images!r}")
        caption_image = torch.as_tensor(caption_image)
        if caption_image.dim() != 1 or caption_image.dtype.is_floating_point or caption_image.dtype == torch.bool:
            raise ValueError(f"caption_image must be a 1-D integer tensor, got {caption_image.dtype} {tuple(caption_image.shape)}")
        caption_image = caption_image.long()
        if caption_image.numel() and (caption_image.min() < 0 or caption_image.max() >= num_images):
            raise ValueError(f"caption_image must hold image indices in [0, {num_images})")
        counts = torch.bincount(caption_image, minlength=num_images)
        if (counts == 0).any():
            raise ValueError(f"every image needs a caption; image {int((counts == 0).nonzero()[0])} has none")
        self.num_items = num_images
        self._images = AugmentationSampler(num_images)
        self._one_to_one = caption_image.numel() == num_images and bool((caption_image == torch.arange(num_images)).all())
        if not self._one_to_one:
            self._order = torch.argsort(caption_image, stable=True)
            self._count = counts
            self._start = torch.cumsum(counts, 0) - counts

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        reference = self._images.draw(batch_size, generator).reference
        uniform = torch.rand(batch_size, generator=generator)  # drawn in both cases: one stream of batches
        if self._one_to_one:
            caption = reference
        else:
            caption = self._order[self._start[reference] + (uniform * self._count[reference]).long()]
        return PairIndex(reference=reference, positive=caption.unsqueeze(1))
