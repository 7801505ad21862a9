"""Crops of waveforms and multichannel sequences, the inputs of CPC."""

from __future__ import annotations

import torch

from contrastive_seq.data.audio import IndexedSequences
from contrastive_seq.sampling.base import PairIndex
from contrastive_seq.views.base import Views


class CropViews(Views):
    """Cut ``crop_length`` time points from each reference start of a sequence dataset.

    The dataset is an :class:`~contrastive_seq.data.audio.IndexedSequences`: a
    :class:`~contrastive_seq.data.audio.SequenceDataset` in memory, or
    :class:`~contrastive_seq.data.audio_folder.AudioFiles`, whose crops are read
    from disk (in the DataLoader workers, where the views run).

    Returns ``{"crops": (N, crop_length, channels), "index": (N,), "seed": ()}``
    plus ``"labels": (N,)`` (speaker / session) when the sampler gave labels.
    ``seed`` is one int64 draw from the generator: the method seeds its
    negative sampling with it, so a batch stays a function of (seed, step).
    """

    def __init__(self, crop_length: int):
        if isinstance(crop_length, bool) or not isinstance(crop_length, int) or crop_length < 1:
            raise ValueError(f"crop_length must be a positive int, got {crop_length!r}")
        self.crop_length = crop_length

    def __call__(  # noqa: D102
        self, dataset: IndexedSequences, pairs: PairIndex, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not isinstance(dataset, IndexedSequences):
            raise TypeError(f"dataset must be a SequenceDataset or AudioFiles, got {type(dataset).__name__}")
        batch = {
            "crops": dataset.crops(pairs.reference, self.crop_length),
            "index": pairs.reference,
            "seed": torch.randint(2**62, (), generator=generator),
        }
        if pairs.labels is not None:
            batch["labels"] = pairs.labels
        return batch
