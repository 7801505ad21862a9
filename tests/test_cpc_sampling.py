"""Crop samplers checked against their definitions, and the crop views."""

import pytest
import torch

from contrastive_seq.data.audio import SequenceDataset
from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler
from contrastive_seq.views.audio import CropViews

LENGTHS = torch.tensor([10, 25, 12, 40, 15, 30])
SPEAKERS = torch.tensor([0, 1, 0, 2, 1, 0])


def locate(reference):
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), LENGTHS.cumsum(0)])
    sequence = torch.searchsorted(offsets, reference, right=True) - 1
    return sequence, reference - offsets[sequence]


def test_crop_sampler_is_uniform_over_sequences_and_starts():
    crop = 8
    pairs = SequenceCropSampler(LENGTHS, crop, SPEAKERS).sample(60000, torch.Generator().manual_seed(0))
    sequence, start = locate(pairs.reference)
    assert torch.equal(pairs.positive[:, 0], pairs.reference)
    assert torch.equal(pairs.labels, SPEAKERS[sequence])
    assert bool((start + crop <= LENGTHS[sequence]).all())
    frequency = torch.bincount(sequence, minlength=len(LENGTHS)).float() / len(sequence)
    assert (frequency - 1 / len(LENGTHS)).abs().max() < 0.01
    of_longest = start[sequence == 3]
    counts = torch.bincount(of_longest, minlength=40 - crop + 1).float() / len(of_longest)
    assert (counts - 1 / (40 - crop + 1)).abs().max() < 0.01


def test_speaker_grouped_sampler_groups_rows_by_speaker():
    sampler = SpeakerGroupedSampler(LENGTHS, 8, SPEAKERS, group_size=4)
    generator = torch.Generator().manual_seed(1)
    picked = torch.zeros(len(LENGTHS))
    for _ in range(1000):
        pairs = sampler.sample(12, generator)
        sequence, _ = locate(pairs.reference)
        groups = pairs.labels.view(3, 4)
        assert bool((groups == groups[:, :1]).all())
        assert len(set(groups[:, 0].tolist())) == 3  # three groups, three distinct speakers
        picked += torch.bincount(sequence, minlength=len(LENGTHS))
    # within a speaker, its sequences are equally likely
    for speaker in range(3):
        members = picked[SPEAKERS == speaker]
        assert (members / members.sum() - 1 / len(members)).abs().max() < 0.03


def test_sampler_errors_name_the_argument():
    with pytest.raises(ValueError, match="utt_a has 10 time points, shorter than crop_length=11"):
        SequenceCropSampler(LENGTHS, 11, names=["utt_a", "b", "c", "d", "e", "f"])
    with pytest.raises(ValueError, match="multiple of group_size"):
        SpeakerGroupedSampler(LENGTHS, 8, SPEAKERS, group_size=4).sample(10, torch.Generator())
    with pytest.raises(ValueError, match="speakers must be given"):
        SpeakerGroupedSampler(LENGTHS, 8, None)


def test_crop_views_cut_the_sampled_windows():
    sequences = [torch.arange(n, dtype=torch.float32) + 1000 * i for i, n in enumerate(LENGTHS.tolist())]
    dataset = SequenceDataset(sequences, SPEAKERS)
    pairs = SequenceCropSampler(dataset.lengths, 8, dataset.speakers).sample(32, torch.Generator().manual_seed(2))
    batch = CropViews(8)(dataset, pairs, torch.Generator().manual_seed(3))
    sequence, start = locate(pairs.reference)
    expected = (sequence * 1000 + start).unsqueeze(1) + torch.arange(8)
    assert batch["crops"].shape == (32, 8, 1)
    assert torch.equal(batch["crops"][..., 0], expected.float())
    assert torch.equal(batch["labels"], SPEAKERS[sequence])
