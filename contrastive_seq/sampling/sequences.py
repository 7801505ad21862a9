"""Crops of sequences for CPC: which sequence, where, and (optionally) grouped by speaker.

Indices are flat time indices into a :class:`~contrastive_seq.data.audio.SequenceDataset`
(``offsets[sequence] + start``): the reference is a crop's first time point;
CPC's positives are the crop's own future frames, so ``positive`` repeats
``reference``; ``labels`` are the crop's speaker (session), which the CPC loss
uses for same-speaker negatives.
"""

from __future__ import annotations

import torch

from contrastive_seq.sampling.base import PairIndex, Sampler


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class SequenceCropSampler(Sampler):
    """Crops of ``crop_length`` time points: a sequence uniformly, then a start uniformly inside it.

    Args:
        lengths: ``(n,)`` sequence lengths (``SequenceDataset.lengths``).
        crop_length: time points per crop; every sequence must be at least this long.
        speakers: optional ``(n,)`` speaker of each sequence, returned as ``labels``.
        names: optional sequence names for errors.

    Each draw costs O(batch).
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        crop_length: int,
        speakers: torch.Tensor | None = None,
        names: list[str] | None = None,
    ):
        self.crop_length = _check_int("crop_length", crop_length, 1)
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if lengths.dim() != 1 or len(lengths) == 0:
            raise ValueError(f"lengths must be a non-empty (n,) tensor, got shape {tuple(lengths.shape)}")
        short = torch.nonzero(lengths < crop_length).flatten()
        if len(short):
            i = int(short[0])
            name = names[i] if names is not None else f"sequence {i}"
            raise ValueError(
                f"{name} has {int(lengths[i])} time points, shorter than crop_length={crop_length} "
                f"({len(short)} of {len(lengths)} sequences are too short)"
            )
        if speakers is not None and torch.as_tensor(speakers).shape != lengths.shape:
            shape = tuple(torch.as_tensor(speakers).shape)
            raise ValueError(f"speakers must have shape {tuple(lengths.shape)}, got {shape}")
        self.lengths = lengths
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        self.speakers = None if speakers is None else torch.as_tensor(speakers).long()
        self.num_items = int(lengths.sum())

    def crops_of(self, sequences: torch.Tensor, generator: torch.Generator) -> PairIndex:
        """Uniform crop starts inside the given ``(N,)`` sequences."""
        room = self.lengths[sequences] - self.crop_length + 1
        start = (torch.rand(len(sequences), generator=generator) * room).long()
        reference = self.offsets[sequences] + start
        labels = None if self.speakers is None else self.speakers[sequences]
        return PairIndex(reference, reference.unsqueeze(1), labels=labels)

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        sequences = torch.randint(len(self.lengths), (batch_size,), generator=generator)
        return self.crops_of(sequences, generator)


class SpeakerGroupedSampler(SequenceCropSampler):
    """Crops in groups of ``group_size`` consecutive rows sharing one speaker.

    Speakers are drawn uniformly without replacement (with replacement when the
    batch needs more groups than there are speakers), then each row's sequence
    uniformly among that speaker's sequences, then a start uniformly. With
    ``negatives="speaker"`` the CPC loss then finds same-speaker negatives
    inside the batch. ``batch_size`` must be a multiple of ``group_size``.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        crop_length: int,
        speakers: torch.Tensor,
        group_size: int = 4,
        names: list[str] | None = None,
    ):
        if speakers is None:
            raise ValueError("speakers must be given: SpeakerGroupedSampler groups crops by speaker")
        super().__init__(lengths, crop_length, speakers, names)
        self.group_size = _check_int("group_size", group_size, 1)
        self.speaker_ids, counts = torch.unique(self.speakers, return_counts=True)
        self.by_speaker = torch.argsort(self.speakers, stable=True)  # sequences sorted by speaker
        self.counts = counts
        self.first = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        if batch_size % self.group_size:
            raise ValueError(f"batch_size={batch_size} must be a multiple of group_size={self.group_size}")
        groups = batch_size // self.group_size
        n_speakers = len(self.speaker_ids)
        if groups <= n_speakers:
            chosen = torch.randperm(n_speakers, generator=generator)[:groups]
        else:
            chosen = torch.randint(n_speakers, (groups,), generator=generator)
        chosen = chosen.repeat_interleave(self.group_size)
        pick = (torch.rand(batch_size, generator=generator) * self.counts[chosen]).long()
        sequences = self.by_speaker[self.first[chosen] + pick]
        return self.crops_of(sequences, generator)
