"""The views step: columns of indices become augmented views, reproducibly."""

import torch

from contrastive_seq.data import ArrayDataset, load_digits
from contrastive_seq.sampling import AugmentationSampler, SameClassSampler
from contrastive_seq.views import TransformedViews
from contrastive_seq.views.image import simclr_augmentation


def test_views_without_transform_are_the_indexed_samples():
    data = ArrayDataset(torch.arange(40.0).reshape(10, 4), torch.arange(10) % 2)
    pairs = SameClassSampler(data.labels).sample(6, torch.Generator().manual_seed(0))
    batch = TransformedViews()(data, pairs, torch.Generator())
    assert batch["views"].shape == (2, 6, 4)
    assert torch.equal(batch["views"][0], data.inputs[pairs.reference])
    assert torch.equal(batch["views"][1], data.inputs[pairs.positive[:, 0]])
    assert torch.equal(batch["labels"], pairs.labels)


def test_augmented_views_differ_and_depend_only_on_the_generator():
    data = load_digits()
    views = TransformedViews(simclr_augmentation(8, channels=1, crop_scale=(0.3, 1.0), flip=False))
    pairs = AugmentationSampler(len(data), n_views=3).sample(16, torch.Generator().manual_seed(0))
    first = views(data, pairs, torch.Generator().manual_seed(1))
    torch.manual_seed(999)  # the global generator must not matter
    second = views(data, pairs, torch.Generator().manual_seed(1))
    assert first["views"].shape == (3, 16, 1, 8, 8)
    assert torch.equal(first["views"], second["views"])
    assert not torch.equal(first["views"][0], first["views"][1])
    assert torch.equal(first["labels"], data.labels[pairs.reference])


def test_colour_recipe_on_large_images():
    transform = simclr_augmentation(64, channels=3, solarize_probability=0.5)
    out = transform(torch.rand(3, 96, 80))
    assert out.shape == (3, 64, 64)
