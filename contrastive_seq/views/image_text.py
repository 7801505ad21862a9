"""Image-text views: the image of each reference and the tokens of its paired caption."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from contrastive_seq.data.caption_tokens import (
    CaptionTokens,
    check_long_caption_policy,
    encode_captions,
    report_long_captions,
)
from contrastive_seq.data.shard_tokens import ShardTokens, shard_tokens
from contrastive_seq.data.shards import ShardedImageText
from contrastive_seq.models.clip_towers import CaptionTokenizer
from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.views.base import Views, augment_views

def _check_tokenizer(tokenizer: object) -> None:
    if not isinstance(tokenizer, CaptionTokenizer):
        raise TypeError(f"tokenizer must be a CaptionTokenizer, got {type(tokenizer).__name__}")


def tokenize_captions(captions: Sequence[str], tokenizer: CaptionTokenizer, long_captions: str = "warn") -> CaptionTokens:
    """All captions' token ids, packed (``tokens[rows]`` is ``(k, context_length)`` int64), checked once, before training.

    Each caption is tokenised once, :data:`~contrastive_seq.data.caption_tokens.TOKENIZE_CHUNK` at a time. A caption
    that needs more tokens than the tokenizer's context length is truncated as
    the tower's tokenizer truncates (its end-of-text token kept) with one warning
    counting such captions (``long_captions="warn"``), or refused with a
    ``ValueError`` naming the first one and its length (``long_captions="error"``).
    """
    check_long_caption_policy(long_captions)
    _check_tokenizer(tokenizer)
    if len(captions) == 0:
        raise ValueError("captions is empty: there is nothing to tokenise")
    tokens, lengths = encode_captions(captions, tokenizer)
    too_long = np.flatnonzero(lengths > tokenizer.context_length)
    first = (int(too_long[0]), int(lengths[too_long[0]]), captions[int(too_long[0])]) if too_long.size else None
    report_long_captions(too_long.size, len(captions), first, tokenizer.context_length, long_captions)
    return tokens


def caption_tokens_of(dataset: object, tokenizer: CaptionTokenizer, long_captions: str = "warn") -> CaptionTokens | ShardTokens:
    """The token ids of ``dataset``'s captions (``tokens[rows]`` is ``(k, context_length)`` int64), checked
    before training as :func:`tokenize_captions` checks them: a sharded dataset's
    (:class:`~contrastive_seq.data.shards.ShardedImageText`) cached on disk per shard and read by batch
    (:func:`~contrastive_seq.data.shard_tokens.shard_tokens`), any other's tokenised into memory."""
    if isinstance(dataset, ShardedImageText):
        _check_tokenizer(tokenizer)
        return shard_tokens(dataset, tokenizer, long_captions)
    return tokenize_captions(dataset.captions, tokenizer, long_captions)


class ImageTextViews(Views):
    """Images of the references and the token ids of their positive captions.

    Returns ``{"image": (N, C, H, W) float in [0, 1], "text": (N, context_length) int64,
    "index": (N,)}`` from a :class:`~contrastive_seq.sampling.paired.PairedSampler`'s
    pairs (``positive[:, 0]`` are caption indices).

    Args:
        caption_tokens: the token ids of every caption, ``caption_tokens[rows]``
            ``(k, context_length)`` int64: the packed table of :func:`tokenize_captions`,
            or a padded ``(m, context_length)`` int64 tensor.
        image_transform: optional augmentation of one image ``(C, H, W) -> (C, H', W')``,
            seeded from the generator (see :func:`~contrastive_seq.views.base.augment_views`).
    """

    def __init__(
        self,
        caption_tokens: CaptionTokens | torch.Tensor,
        image_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        dense = isinstance(caption_tokens, torch.Tensor) and caption_tokens.dim() == 2 and caption_tokens.dtype == torch.long
        if not (dense or isinstance(caption_tokens, (CaptionTokens, ShardTokens))):
            raise ValueError(
                f"caption_tokens must be a CaptionTokens or ShardTokens table (caption_tokens_of) or an int64 tensor of shape "
                f"(captions, context_length), got {getattr(caption_tokens, 'shape', type(caption_tokens).__name__)}"
            )
        self.caption_tokens = caption_tokens
        self.image_transform = image_transform

    def __call__(self, dataset: object, pairs: PairIndex, generator: torch.Generator) -> dict[str, torch.Tensor]:  # noqa: D102
        num_captions = getattr(dataset, "num_captions", None)  # counted, never decoded here
        if num_captions is not None and num_captions != self.caption_tokens.shape[0]:
            raise ValueError(
                f"caption_tokens has {self.caption_tokens.shape[0]} rows but the dataset has {num_captions} captions"
            )
        images = dataset[pairs.reference]
        if self.image_transform is not None:
            images = augment_views(images.unsqueeze(0), self.image_transform, generator)[0]
        return {"image": images, "text": self.caption_tokens[pairs.positive[:, 0]], "index": pairs.reference}
