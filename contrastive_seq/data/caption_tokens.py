"""Token ids of many captions packed end to end: a few bytes a caption instead of a padded row.

A padded ``(m, context_length)`` int64 table costs ``8 * context_length``
bytes a caption (616 at CLIP's 77 tokens: 616 MB for 10⁶ pairs, held by every
run). :class:`CaptionTokens` keeps each caption's ids (already truncated) one
after another in the narrowest integer type that holds the vocabulary
(``uint16`` for CLIP's 49,408 tokens) plus where each ends, about
``2 * tokens + 8`` bytes a caption, and pads only the rows a batch asks for.
The arrays are numpy arrays, so DataLoader workers forked after they were
built share them without copying.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from contrastive_seq.user_warnings import warn_at_caller

if TYPE_CHECKING:
    from contrastive_seq.models.clip_towers import CaptionTokenizer

#: captions tokenised at a time: bounds the Python lists alive while a large set is packed
TOKENIZE_CHUNK = 10_000
#: what to do with a caption longer than the context length: truncate it (one counting warning) or refuse it
LONG_CAPTION_POLICIES = ("warn", "error")


def check_long_caption_policy(long_captions: str) -> None:
    """Raises ``ValueError`` naming ``long_captions`` unless it is one of :data:`LONG_CAPTION_POLICIES`."""
    if long_captions not in LONG_CAPTION_POLICIES:
        raise ValueError(f"long_captions must be one of {LONG_CAPTION_POLICIES}, got {long_captions!r}")


def report_long_captions(
    too_long: int, total: int, first: tuple[int, int, str] | None, context_length: int, long_captions: str
) -> None:
    """Warn once counting the ``too_long`` of ``total`` captions longer than ``context_length`` tokens
    (``long_captions="warn"``: they are truncated), or refuse them (``"error"``: ``ValueError``).

    ``first`` is ``(index, tokens it needs, text)`` of the first such caption, ``None`` when there is none.
    """
    if first is None:
        return
    index, length, text = first
    message = (
        f"{too_long} of {total} captions are longer than the context length {context_length} tokens "
        f"(first: caption {index}, {length} tokens: {text[:80]!r})"
    )
    if long_captions == "error":
        raise ValueError(message + "; shorten them, raise the context length, or pass long_captions='warn' to truncate")
    warn_at_caller(message + "; they are truncated")


def _narrowest(ids: np.ndarray) -> np.ndarray:
    """``ids`` as ``uint16`` when every id fits, else ``int32`` (vocabularies of up to 2³¹ tokens)."""
    if ids.size and (ids.min() < 0 or ids.max() >= 2**31):
        raise ValueError(f"token ids must lie in [0, 2**31), got ids from {ids.min()} to {ids.max()}")
    return ids.astype(np.uint16 if not ids.size or ids.max() < 2**16 else np.int32)


def row_positions(rows: torch.Tensor | np.ndarray | slice, length: int) -> np.ndarray:
    """``rows`` of a table of ``length`` rows (a ``(k,)`` index tensor or array, negative from the end,
    or a slice) as ``(k,)`` int64 positions in ``[0, length)``.

    Raises:
        ValueError: ``rows`` of more than one dimension.
        IndexError: a row outside ``[-length, length)``.
    """
    if isinstance(rows, slice):
        return np.arange(*rows.indices(length), dtype=np.int64)
    picked = np.asarray(rows, dtype=np.int64)
    if picked.ndim != 1:
        raise ValueError(f"rows must index one dimension, got shape {picked.shape}")
    if picked.size and (picked.min() < -length or picked.max() >= length):
        raise IndexError(f"rows must lie in [-{length}, {length}), got {picked.min()} to {picked.max()}")
    return np.where(picked < 0, picked + length, picked)


class CaptionTokens:
    """The token ids of ``m`` captions, each at most ``context_length`` long, packed end to end.

    ``tokens[rows]`` (``rows`` a ``(k,)`` index tensor or array, or a slice) is
    ``(k, context_length)`` int64, each caption's ids followed by
    ``pad_token_id``: the padded table the text tower reads. ``len(tokens)`` is
    ``m``; ``tokens.shape`` is ``(m, context_length)``.

    Args:
        ids: ``(total,)`` every caption's ids one after another.
        ends: ``(m,)`` int64, where each caption's ids end in ``ids`` (non-decreasing).
        context_length: the padded row width; no caption may be longer.
        pad_token_id: the id that fills a row after its caption.
    """

    def __init__(self, ids: np.ndarray, ends: np.ndarray, context_length: int, pad_token_id: int):
        self.ids, self.ends = _narrowest(np.asarray(ids)), np.asarray(ends, dtype=np.int64)
        self.context_length, self.pad_token_id = int(context_length), int(pad_token_id)
        starts = self._starts()
        if self.ends.ndim != 1 or (self.ends.size and self.ends[-1] != self.ids.size) or np.any(self.ends < starts):
            raise ValueError(f"ends must be (m,) non-decreasing offsets ending at ids' {self.ids.size} ids")
        if self.ends.size and int((self.ends - starts).max()) > self.context_length:
            raise ValueError(f"a caption has more than context_length={self.context_length} tokens: truncate it first")

    @classmethod
    def from_ids(cls, ids: Sequence[Sequence[int]], context_length: int, pad_token_id: int) -> CaptionTokens:
        """Pack one list of token ids per caption (each already truncated to ``context_length``)."""
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return cls(flat, np.cumsum(lengths), context_length, pad_token_id)

    @classmethod
    def concatenate(cls, parts: Sequence[CaptionTokens]) -> CaptionTokens:
        """The captions of ``parts`` in order, as one table (all with the same width and pad id)."""
        if not parts:
            raise ValueError("parts must hold at least one CaptionTokens")
        first = parts[0]
        if any((p.context_length, p.pad_token_id) != (first.context_length, first.pad_token_id) for p in parts):
            raise ValueError("parts must share context_length and pad_token_id")
        offsets = np.cumsum([0] + [p.ids.size for p in parts[:-1]])
        ends = np.concatenate([p.ends + offset for p, offset in zip(parts, offsets)])
        return cls(np.concatenate([p.ids for p in parts]), ends, first.context_length, first.pad_token_id)

    def _starts(self) -> np.ndarray:
        return np.concatenate([np.zeros(1, dtype=np.int64), self.ends[:-1]])

    def __len__(self) -> int:
        return self.ends.size

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, context_length)``: the shape of the padded table these ids stand for."""
        return len(self), self.context_length

    @property
    def nbytes(self) -> int:
        """Bytes the packed ids and their ends hold."""
        return self.ids.nbytes + self.ends.nbytes

    def __getitem__(self, rows: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        """The padded token ids of ``rows``: ``(k, context_length)`` int64."""
        picked = row_positions(rows, len(self))
        ends = self.ends[picked]
        starts = np.where(picked > 0, self.ends[picked - 1], 0)
        position = np.arange(self.context_length)
        inside = position < (ends - starts)[:, None]
        table = np.full((picked.size, self.context_length), self.pad_token_id, dtype=np.int64)
        table[inside] = self.ids[(starts[:, None] + position)[inside]]
        return torch.from_numpy(table)


def encode_captions(captions: Sequence[str], tokenizer: CaptionTokenizer) -> tuple[CaptionTokens, np.ndarray]:
    """Every caption's token ids, truncated as the tokenizer truncates and packed, and ``(m,)`` int64 the
    tokens each needed before truncation; tokenised :data:`TOKENIZE_CHUNK` captions at a time."""
    parts, lengths = [], []
    for start in range(0, len(captions), TOKENIZE_CHUNK):
        ids, needed = tokenizer.encode(captions[start : start + TOKENIZE_CHUNK])
        parts.append(CaptionTokens.from_ids(ids, tokenizer.context_length, tokenizer.pad_token_id))
        lengths.extend(needed)
    if not parts:
        return CaptionTokens(np.zeros(0), np.zeros(0), tokenizer.context_length, tokenizer.pad_token_id), np.zeros(0, np.int64)
    return CaptionTokens.concatenate(parts), np.array(lengths, dtype=np.int64)
