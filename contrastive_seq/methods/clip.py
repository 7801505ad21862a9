"""CLIP (Radford et al. 2021) and LiT (Zhai et al. 2022): an image and a text tower scored by one image-text loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.models.clip_towers import ImageTower, TextTower
from contrastive_seq.training.gradient_cache import GradientCache


class CLIP(Method):
    """Embed images and their captions into one space and score the pairs with CLIP's (or SigLIP's) loss.

    Batch: ``{"image": (N, C, H, W) in [0, 1], "text": (N, context_length) int64}``
    from a paired sampler and :class:`~contrastive_seq.views.image_text.ImageTextViews`.
    Locking a tower (LiT) is a property of the tower (see
    :class:`~contrastive_seq.models.clip_towers.Tower`).

    Args:
        image_tower: images ``-> (N, d)``.
        text_tower: token ids ``-> (N, d)``, with its ``tokenizer``.
        loss: a :class:`CLIPLoss` (learnable logit scale clamped to 100) or a :class:`SigLIPLoss`.
        chunk_size: ``None`` embeds the whole batch at once; an int embeds
            both towers this many rows at a time through a
            :class:`~contrastive_seq.training.gradient_cache.GradientCache`
            (features cached, loss on the whole batch, chunks re-run with a
            graph): the gradients of the whole batch with the activation
            memory of one chunk.
    """

    def __init__(
        self, image_tower: ImageTower, text_tower: TextTower, loss: CLIPLoss | SigLIPLoss, chunk_size: int | None = None
    ):
        super().__init__()
        if not isinstance(image_tower, ImageTower):
            raise TypeError(f"image_tower must be an ImageTower, got {type(image_tower).__name__}")
        if not isinstance(text_tower, TextTower):
            raise TypeError(f"text_tower must be a TextTower, got {type(text_tower).__name__}")
        if image_tower.output_dim != text_tower.output_dim:
            raise ValueError(
                f"image_tower and text_tower must share their output dimension, "
                f"got {image_tower.output_dim} and {text_tower.output_dim}"
            )
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.loss = loss
        self.cache = None if chunk_size is None else GradientCache(chunk_size)

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        if self.cache is None:
            return self.loss(self.image_tower(batch["image"]), self.text_tower(batch["text"]))
        towers = [(self.image_tower, batch["image"]), (self.text_tower, batch["text"])]
        return self.cache(self, towers, lambda embeddings: self.loss(*embeddings))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings in the shared space: ``(N, C, H, W) -> (N, d)`` (not normalised)."""
        return self.image_tower(x)

    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings in the shared space: token ids ``(N, context_length) -> (N, d)`` (not normalised)."""
        return self.text_tower(tokens)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(len(texts), context_length)`` from the text tower's tokenizer (long texts truncated)."""
        return self.text_tower.tokenizer(texts)
