"""Token ids of sharded captions, cached on disk per shard and per tokenizer, read by batch.

Tokenising 10⁶ captions takes about 35 s on this machine's CPU and their packed
ids take ~34 MB; 10⁸ captions would take an hour and 3.4 GB on every start.
:func:`shard_tokens` instead tokenises each shard's captions once per
tokenizer and writes them beside the shard's index
(``<index>.tokens-<tokenizer fingerprint>.npz``, valid for the shard's path,
size and modification time like the index, see
:func:`~contrastive_seq.data.shards.cached_shard_index`); a later start reads
only what the long-caption check needs. :class:`ShardTokens` then reads the
rows a batch asks for from disk (:class:`~contrastive_seq.data.npz_rows.NpzRagged`),
so no part of the tokens stays in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from contrastive_seq.data.caption_tokens import (
    CaptionTokens,
    check_long_caption_policy,
    encode_captions,
    report_long_captions,
    row_positions,
)
from contrastive_seq.data.npz_rows import NpzRagged
from contrastive_seq.data.shards import ShardedImageText, cached_arrays, fallback_folder, shard_stamp

if TYPE_CHECKING:
    from contrastive_seq.models.clip_towers import CaptionTokenizer

#: the layout of cached shard tokens (a cache of another version is rebuilt)
TOKENS_VERSION = 1


def tokens_cache_path(index_cache: Path, fingerprint: str) -> Path:
    """Where a shard's tokens for the tokenizer of ``fingerprint`` are cached: beside its index ``index_cache``."""
    return index_cache.with_name(index_cache.name.removesuffix(".index.npz") + f".tokens-{fingerprint[:16]}.npz")


def _tokenize_shard(index_cache: Path, tokenizer: CaptionTokenizer) -> dict[str, np.ndarray]:
    """Every caption of one shard's index tokenised: ``ids_values`` / ``ids_ends`` (packed, truncated ids)
    and ``length`` ``(rows,)`` int32, the tokens each caption needs before truncation."""
    with np.load(index_cache, allow_pickle=False) as index:
        joined, ends = index["caption_values"].tobytes(), index["caption_ends"].tolist()
    captions = [joined[a:b].decode("utf-8") for a, b in zip([0, *ends[:-1]], ends)]
    tokens, lengths = encode_captions(captions, tokenizer)
    return {"ids_values": tokens.ids, "ids_ends": tokens.ends, "length": lengths.astype(np.int32)}


def cached_shard_tokens(shard: Path, index_cache: Path, tokenizer: CaptionTokenizer) -> Path:
    """The file holding the tokens of ``shard``'s captions (read from its index ``index_cache``) for
    ``tokenizer``: its cache when fresh (written for this shard's path, size, modification time and this
    tokenizer's :meth:`~contrastive_seq.models.clip_towers.CaptionTokenizer.fingerprint`), else tokenised
    and cached (written atomically)."""
    fingerprint = tokenizer.fingerprint()
    stamp = {**shard_stamp(shard, TOKENS_VERSION), "tokenizer": np.frombuffer(fingerprint.encode(), dtype=np.uint8)}
    cache = tokens_cache_path(index_cache, fingerprint)
    return cached_arrays(cache, fallback_folder() / cache.name, stamp, lambda: _tokenize_shard(index_cache, tokenizer))


class ShardTokens:
    """The token ids of a :class:`~contrastive_seq.data.shards.ShardedImageText`'s captions, read from the
    per-shard caches by batch: ``tokens[rows]`` (``rows`` a ``(k,)`` index tensor or array, or a slice)
    is ``(k, context_length)`` int64, each caption's ids followed by ``pad_token_id``, as a
    :class:`~contrastive_seq.data.caption_tokens.CaptionTokens` table gives them. Holds no token in memory.

    Args:
        dataset: the pairs whose captions these are (caption i is image i's).
        files: one cache per shard of ``dataset`` (:func:`cached_shard_tokens`), in shard order.
        context_length: the padded row width.
        pad_token_id: the id that fills a row after its caption.
    """

    def __init__(self, dataset: ShardedImageText, files: list[Path], context_length: int, pad_token_id: int):
        self.dataset = dataset
        self._ids = [NpzRagged(path, "ids") for path in files]
        self.context_length, self.pad_token_id = context_length, pad_token_id

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, context_length)``: the shape of the padded table these ids stand for."""
        return len(self), self.context_length

    def __getitem__(self, rows: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        """The padded token ids of ``rows``: ``(k, context_length)`` int64."""
        shards, shard_rows = self.dataset.locate(row_positions(rows, len(self)))
        ids = [self._ids[shard].row(row) for shard, row in zip(shards.tolist(), shard_rows.tolist())]
        ends = np.cumsum([len(row) for row in ids], dtype=np.int64)
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return CaptionTokens(flat, ends, self.context_length, self.pad_token_id)[:]


def shard_tokens(dataset: ShardedImageText, tokenizer: CaptionTokenizer, long_captions: str = "warn") -> ShardTokens:
    """The token ids of ``dataset``'s captions, each shard's tokenised once per tokenizer and cached on
    disk (:func:`cached_shard_tokens`), read by batch (:class:`ShardTokens`).

    Checked before training as :func:`~contrastive_seq.views.image_text.tokenize_captions` checks: a
    caption longer than the context length is truncated with one warning counting such captions of
    ``dataset`` (``long_captions="warn"``) or refused with a ``ValueError`` naming the first
    (``"error"``). Memory: each shard's lengths, one shard at a time.
    """
    check_long_caption_policy(long_captions)
    files = [cached_shard_tokens(index.shard, index.cache, tokenizer) for index in dataset.shard_indexes]
    too_long, first = 0, None
    shards, rows = dataset.locate(np.arange(len(dataset)))
    by_shard = np.argsort(shards, kind="stable")  # the dataset's captions grouped by shard, in order within each
    bounds = np.searchsorted(shards[by_shard], np.arange(len(files) + 1))
    for number, path in enumerate(files):
        here = by_shard[bounds[number] : bounds[number + 1]]
        if not here.size:
            continue
        with np.load(path, allow_pickle=False) as saved:
            needed = saved["length"][rows[here]]
        long_here = np.flatnonzero(needed > tokenizer.context_length)
        too_long += long_here.size
        if long_here.size and (first is None or here[long_here[0]] < first[0]):
            i = int(here[long_here[0]])
            first = (i, int(needed[long_here[0]]), dataset.caption(i))
    report_long_captions(too_long, len(dataset), first, tokenizer.context_length, long_captions)
    return ShardTokens(dataset, files, tokenizer.context_length, tokenizer.pad_token_id)
