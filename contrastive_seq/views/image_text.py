"""Image-text views: the image of each reference and the tokens of its paired caption."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from contrastive_seq.models.clip_towers import CaptionTokenizer
from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.views.base import Views, augment_views

LONG_CAPTION_POLICIES = ("warn", "error")


def tokenize_captions(captions: Sequence[str], tokenizer: CaptionTokenizer, long_captions: str = "warn") -> torch.Tensor:
    """All captions as token ids ``(m, context_length)``, checked once, before training.

    A caption that needs more tokens than the tokenizer's context length is
    truncated (its end-of-text token kept) with one warning counting such
    captions (``long_captions="warn"``), or refused with a ``ValueError``
    naming the first one and its length (``long_captions="error"``).
    """
    if long_captions not in LONG_CAPTION_POLICIES:
        raise ValueError(f"long_captions must be one of {LONG_CAPTION_POLICIES}, got {long_captions!r}")
    if not isinstance(tokenizer, CaptionTokenizer):
        raise TypeError(f"tokenizer must be a CaptionTokenizer, got {type(tokenizer).__name__}")
    lengths = torch.tensor(tokenizer.lengths(captions), dtype=torch.long)
    too_long = (lengths > tokenizer.context_length).nonzero().squeeze(1)
    if too_long.numel():
        first = int(too_long[0])
        message = (
            f"{too_long.numel()} of {len(captions)} captions are longer than the context length "
            f"{tokenizer.context_length} tokens (first: caption {first}, {int(lengths[first])} tokens: "
            f"{captions[first][:80]!r})"
        )
        if long_captions == "error":
            raise ValueError(message + "; shorten them, raise the context length, or pass long_captions='warn' to truncate")
        warnings.warn(message + "; they are truncated", stacklevel=2)
    return tokenizer(captions)


class ImageTextViews(Views):
    """Images of the references and the token ids of their positive captions.

    Returns ``{"image": (N, C, H, W) float in [0, 1], "text": (N, context_length) int64,
    "index": (N,)}`` from a :class:`~contrastive_seq.sampling.paired.PairedSampler`'s
    pairs (``positive[:, 0]`` are caption indices).

    Args:
        caption_tokens: ``(m, context_length)`` token ids of every caption
            (from :func:`tokenize_captions`).
        image_transform: optional augmentation of one image ``(C, H, W) -> (C, H', W')``,
            seeded from the generator (see :func:`~contrastive_seq.views.base.augment_views`).
    """

    def __init__(
        self, caption_tokens: torch.Tensor, image_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ):
        if not isinstance(caption_tokens, torch.Tensor) or caption_tokens.dim() != 2 or caption_tokens.dtype != torch.long:
            raise ValueError(
                f"caption_tokens must be an int64 tensor of shape (captions, context_length), "
                f"got {getattr(caption_tokens, 'shape', type(caption_tokens).__name__)}"
            )
        self.caption_tokens = caption_tokens
        self.image_transform = image_transform

    def __call__(self, dataset: object, pairs: PairIndex, generator: torch.Generator) -> dict[str, torch.Tensor]:  # noqa: D102
        captions = getattr(dataset, "captions", None)
        if captions is not None and len(captions) != self.caption_tokens.shape[0]:
            raise ValueError(
                f"caption_tokens has {self.caption_tokens.shape[0]} rows but the dataset has {len(captions)} captions"
            )
        images = dataset[pairs.reference]
        if self.image_transform is not None:
            images = augment_views(images.unsqueeze(0), self.image_transform, generator)[0]
        return {"image": images, "text": self.caption_tokens[pairs.positive[:, 0]], "index": pairs.reference}
