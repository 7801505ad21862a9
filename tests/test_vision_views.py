"""Vision views: SimCLR, BYOL's asymmetric and DINO's multi-crop recipes, for grey 28x28 and colour images."""

import pytest
import torch
from torchvision.transforms import v2

from contrastive_seq.data import ArrayDataset
from contrastive_seq.sampling import AugmentationSampler, SameClassSampler
from contrastive_seq.views.image import (
    byol_augmentations,
    check_image_views,
    multicrop_augmentations,
    simclr_augmentation,
)
from contrastive_seq.views.multicrop import MultiCropViews


def step_types(compose: v2.Compose) -> list[str]:
    """Names of the steps, looking inside RandomApply."""
    names = []
    for step in compose.transforms:
        inner = step.transforms if isinstance(step, v2.RandomApply) else [step]
        names += [type(t).__name__ for t in inner]
    return names


def random_apply_probability(compose: v2.Compose, kind: type) -> float:
    for step in compose.transforms:
        if isinstance(step, v2.RandomApply) and isinstance(step.transforms[0], kind):
            return step.p
        if isinstance(step, kind):
            return step.p
    return 0.0


def images(n=12, channels=1, size=28, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_byol_views_are_asymmetric_in_blur_and_solarisation():
    first, second = byol_augmentations(28, channels=3)
    assert random_apply_probability(first, v2.GaussianBlur) == 1.0
    assert random_apply_probability(second, v2.GaussianBlur) == 0.1
    assert "RandomSolarize" not in step_types(first)
    assert random_apply_probability(second, v2.RandomSolarize) == 0.2
    jitter = first.transforms[2].transforms[0]
    assert jitter.brightness == (0.6, 1.4) and jitter.saturation == (0.8, 1.2)


def test_grey_recipes_leave_out_colour_steps():
    first, second = byol_augmentations(28, channels=1, blur_probabilities=(0.0, 0.0))
    for recipe in (first, second, simclr_augmentation(28, channels=1)):
        assert "RandomGrayscale" not in step_types(recipe)
        jitter = next(t for t in recipe.transforms if isinstance(t, v2.RandomApply)).transforms[0]
        assert jitter.saturation is None and jitter.hue is None
    assert "GaussianBlur" not in step_types(first)
    out = first(torch.rand(1, 40, 30))
    assert out.shape == (1, 28, 28)


def test_multicrop_recipes_give_two_global_sizes_and_a_local_size():
    (first, second), local = multicrop_augmentations(32, 12, channels=3)
    image = torch.rand(3, 50, 50)
    assert first(image).shape == second(image).shape == (3, 32, 32)
    assert local(image).shape == (3, 12, 12)
    assert local.transforms[0].scale == (0.05, 0.4) and first.transforms[0].scale == (0.4, 1.0)
    assert "RandomSolarize" not in step_types(local)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: simclr_augmentation(28, channels=2), "channels"),
        (lambda: simclr_augmentation(28, crop_scale=(0.5, 0.2)), "crop_scale"),
        (lambda: byol_augmentations(28, blur_probabilities=(1.0,)), "blur_probabilities"),
        (lambda: byol_augmentations(28, solarize_probabilities=(0.0, 1.5)), "solarize_probability"),
        (lambda: multicrop_augmentations(16, 24), "local_size"),
        (lambda: multicrop_augmentations(16, 0), "local_size"),
        (lambda: multicrop_augmentations(16, 8, local_scale=(0.0, 0.3)), "crop_scale"),
    ],
)
def test_bad_recipe_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_multicrop_views_shapes_labels_and_reproducibility():
    data = ArrayDataset(images(20), torch.arange(20) % 4)
    (first, second), local = multicrop_augmentations(28, 12, channels=1, global_blur_probabilities=(0.5, 0.1))
    views = MultiCropViews([first, second], local, n_local=3)
    pairs = AugmentationSampler(len(data)).sample(6, torch.Generator().manual_seed(0))
    batch = views(data, pairs, torch.Generator().manual_seed(1))
    assert batch["views"].shape == (2, 6, 1, 28, 28)
    assert batch["local_views"].shape == (3, 6, 1, 12, 12)
    assert torch.equal(batch["labels"], data.labels[pairs.reference])
    assert torch.equal(batch["index"], pairs.reference)
    torch.manual_seed(123)  # the global generator must not matter
    again = views(data, pairs, torch.Generator().manual_seed(1))
    assert torch.equal(batch["views"], again["views"]) and torch.equal(batch["local_views"], again["local_views"])
    other = views(data, pairs, torch.Generator().manual_seed(2))
    assert not torch.equal(batch["views"], other["views"])
    assert not torch.equal(batch["views"][0], batch["views"][1])


def test_multicrop_views_without_transforms_crop_the_reference():
    data = ArrayDataset(images(10))
    identity = MultiCropViews([lambda x: x, lambda x: x.flip(-1)])
    pairs = AugmentationSampler(len(data), n_views=3).sample(4, torch.Generator().manual_seed(0))
    batch = identity(data, pairs, torch.Generator())
    assert "local_views" not in batch and "labels" not in batch
    assert torch.equal(batch["views"][0], data.inputs[pairs.reference])
    assert torch.equal(batch["views"][1], data.inputs[pairs.reference].flip(-1))


def test_multicrop_views_refuse_other_samples_as_positives_and_bad_arguments():
    data = ArrayDataset(images(10), torch.arange(10) % 2)
    views = MultiCropViews([lambda x: x])
    pairs = SameClassSampler(data.labels).sample(4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="AugmentationSampler"):
        views(data, pairs, torch.Generator())
    with pytest.raises(ValueError, match="global_transforms"):
        MultiCropViews([])
    with pytest.raises(ValueError, match="n_local"):
        MultiCropViews([lambda x: x], n_local=-1)
    with pytest.raises(ValueError, match="local_transform"):
        MultiCropViews([lambda x: x], n_local=2)


@pytest.mark.parametrize(
    "views,kwargs,error,match",
    [
        ([1, 2], {}, TypeError, "torch.Tensor"),
        (torch.zeros(2, 4, 28, 28), {}, ValueError, r"\(views, batch, channels, height, width\)"),
        (torch.zeros(2, 4, 1, 28, 28, dtype=torch.uint8), {}, TypeError, "floating-point"),
        (torch.zeros(1, 4, 1, 8, 8), {"min_views": 2}, ValueError, "at least 2 views"),
        (torch.zeros(3, 4, 1, 8, 8), {"max_views": 2}, ValueError, "at most 2 views"),
        (torch.zeros(2, 1, 1, 8, 8), {"min_samples": 2}, ValueError, "in-batch negatives"),
    ],
)
def test_check_image_views_names_what_is_wrong(views, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_image_views("batch['views']", views, **kwargs)
