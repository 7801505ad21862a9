"""The paired image-text sampler against its definition."""

import pytest
import torch

from contrastive_seq.sampling.paired import PairedSampler


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_positive_is_a_caption_of_the_reference_and_images_never_repeat():
    caption_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9])
    sampler = PairedSampler(caption_image, 10)
    g = gen()
    for _ in range(50):
        pairs = sampler.sample(8, g)
        assert pairs.positive.shape == (8, 1)
        assert torch.equal(caption_image[pairs.positive[:, 0]], pairs.reference)
        assert pairs.reference.unique().numel() == 8


def test_images_are_uniform_and_captions_uniform_within_their_image():
    # image i has i + 1 captions
    caption_image = torch.cat([torch.full((i + 1,), i) for i in range(6)])
    sampler = PairedSampler(caption_image, 6)
    g = gen(1)
    image_counts = torch.zeros(6)
    caption_counts = torch.zeros(caption_image.numel())
    draws = 4000
    for _ in range(draws):
        pairs = sampler.sample(3, g)
        image_counts += torch.bincount(pairs.reference, minlength=6)
        caption_counts += torch.bincount(pairs.positive[:, 0], minlength=caption_image.numel())
    expected = draws * 3 / 6
    chi2_images = float(((image_counts - expected) ** 2 / expected).sum())
    assert chi2_images < 20.5  # 5 degrees of freedom: p < 0.001 above 20.5
    expected_caption = expected / (caption_image + 1).float()  # an image's draws split evenly over its captions
    chi2_captions = float(((caption_counts - expected_caption) ** 2 / expected_caption).sum())
    assert chi2_captions < 37.7  # 21 captions - 6 images = 15 free cells: p < 0.001 above 37.7


def test_same_seed_same_draw_and_batch_larger_than_images_fails():
    sampler = PairedSampler(torch.arange(100) % 40, 40)
    assert torch.equal(sampler.sample(30, gen(3)).positive, sampler.sample(30, gen(3)).positive)
    with pytest.raises(ValueError, match="batch_size=41"):
        sampler.sample(41, gen())


@pytest.mark.parametrize(
    "caption_image,num_images,match",
    [
        (torch.tensor([0, 1, 3]), 4, "image 2 has none"),
        (torch.tensor([0, 5]), 2, r"image indices in \[0, 2\)"),
        (torch.tensor([0.0, 1.0]), 2, "integer"),
        (torch.tensor([0, 1]), 0, "num_images"),
    ],
)
def test_bad_input_names_the_problem(caption_image, num_images, match):
    with pytest.raises(ValueError, match=match):
        PairedSampler(caption_image, num_images)


def test_one_caption_per_image_keeps_no_tables_and_draws_the_batches_of_the_general_path():
    """caption i of image i: the sampler holds no (n,) table, each caption is its image, and a draw
    consumes the generator as the general path does (the same stream of batches as a set whose
    captions are the same images in another order)."""
    n = 50
    one_to_one = PairedSampler(torch.arange(n), n)
    shuffled_order = torch.randperm(n, generator=gen(5))  # caption j describes image shuffled_order[j]
    general = PairedSampler(shuffled_order, n)
    assert not any(isinstance(value, torch.Tensor) for value in vars(one_to_one).values())
    first, second = gen(2), gen(2)
    for _ in range(20):
        pairs, other = one_to_one.sample(16, first), general.sample(16, second)
        assert torch.equal(pairs.positive[:, 0], pairs.reference)
        assert torch.equal(pairs.reference, other.reference)
        assert torch.equal(shuffled_order[other.positive[:, 0]], other.reference)
    assert torch.equal(first.get_state(), second.get_state())
