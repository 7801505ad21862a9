"""Samplers against their definitions, the PairIndex contract and its sharding."""

import pytest
import torch

from contrastive_seq.sampling import AugmentationSampler, PairIndex, SameClassSampler


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n_views", [2, 3, 5])
def test_augmentation_positives_are_the_reference_itself(n_views):
    pairs = AugmentationSampler(1000, n_views=n_views).sample(64, gen())
    assert pairs.positive.shape == (64, n_views - 1)
    assert torch.equal(pairs.positive, pairs.reference.unsqueeze(1).expand(-1, n_views - 1))
    assert pairs.negative is None and pairs.labels is None


@pytest.mark.parametrize("num_items,batch", [(10_000, 256), (300, 256), (256, 256)])
def test_augmentation_without_replacement_never_repeats(num_items, batch):
    pairs = AugmentationSampler(num_items).sample(batch, gen(1))
    assert pairs.reference.unique().numel() == batch
    assert int(pairs.reference.min()) >= 0 and int(pairs.reference.max()) < num_items


def test_augmentation_draws_are_uniform():
    counts = torch.zeros(20)
    sampler = AugmentationSampler(20, replacement=True)
    g = gen(2)
    for _ in range(200):
        counts += torch.bincount(sampler.sample(100, g).reference, minlength=20)
    expected = 200 * 100 / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 above 43.8


def test_same_generator_seed_gives_same_draw():
    sampler = SameClassSampler(torch.arange(1000) % 7)
    a, b = sampler.sample(128, gen(5)), sampler.sample(128, gen(5))
    assert torch.equal(a.reference, b.reference) and torch.equal(a.positive, b.positive)
    c = sampler.sample(128, gen(6))
    assert not torch.equal(a.reference, c.reference)


def test_sampling_leaves_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    AugmentationSampler(1000).sample(64, gen())
    SameClassSampler(torch.arange(100) % 3).sample(64, gen())
    assert torch.equal(before, torch.get_rng_state())


def test_same_class_positive_shares_label_and_is_another_sample():
    labels = torch.randint(0, 12, (5000,), generator=gen(3))
    sampler = SameClassSampler(labels, positives_per_reference=4)
    pairs = sampler.sample(2048, gen(4))
    assert torch.equal(pairs.labels, labels[pairs.reference])
    assert torch.equal(labels[pairs.positive], pairs.labels.unsqueeze(1).expand(-1, 4))
    assert (pairs.positive != pairs.reference.unsqueeze(1)).all()


def test_same_class_positive_is_uniform_within_class():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    sampler = SameClassSampler(labels)
    pairs = sampler.sample(40_000, gen(7))
    from_zero = pairs.positive[pairs.reference == 0, 0]
    counts = torch.bincount(from_zero, minlength=4)[1:4].float()
    assert counts.min() / counts.max() > 0.9  # members 1, 2, 3 equally likely
    assert int(torch.bincount(from_zero, minlength=4)[0]) == 0


def test_same_class_refuses_singletons_unless_allowed():
    with pytest.raises(ValueError, match="single sample"):
        SameClassSampler(torch.tensor([0, 0, 1]))
    pairs = SameClassSampler(torch.tensor([0, 0, 1]), allow_singletons=True).sample(50, gen())
    alone = pairs.reference == 2
    assert torch.equal(pairs.positive[alone, 0], pairs.reference[alone])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(labels=torch.zeros(0, dtype=torch.long)), "labels"),
        (dict(labels=torch.ones(4)), "labels"),
        (dict(labels=torch.zeros(2, 2, dtype=torch.long)), "labels"),
        (dict(labels=torch.zeros(4, dtype=torch.long), positives_per_reference=0), "positives_per_reference"),
    ],
)
def test_same_class_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SameClassSampler(**kwargs)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        AugmentationSampler(10).sample(batch_size, gen())


def test_bad_generator_and_sizes():
    with pytest.raises(TypeError, match="generator"):
        AugmentationSampler(10).sample(4, 0)
    with pytest.raises(ValueError, match="num_items"):
        AugmentationSampler(0)
    with pytest.raises(ValueError, match="n_views"):
        AugmentationSampler(10, n_views=1)
    with pytest.raises(ValueError, match="batch_size=11"):
        AugmentationSampler(10).sample(11, gen())


def test_pair_index_checks_shapes():
    ref = torch.arange(4)
    with pytest.raises(ValueError, match="positive"):
        PairIndex(ref, torch.arange(3).unsqueeze(1))
    with pytest.raises(TypeError, match="reference"):
        PairIndex(ref.float(), ref.unsqueeze(1))
    with pytest.raises(ValueError, match="labels"):
        PairIndex(ref, ref.unsqueeze(1), labels=torch.arange(5))
    with pytest.raises(ValueError, match="negative"):
        PairIndex(ref, ref.unsqueeze(1), negative=torch.zeros(3, 2, dtype=torch.long))


def test_shard_splits_rows_and_shared_negatives():
    pairs = PairIndex(
        torch.arange(8), torch.arange(8).unsqueeze(1) + 100, negative=torch.arange(6) + 50, labels=torch.arange(8) % 2
    )
    shards = [pairs.shard(r, 2) for r in range(2)]
    assert torch.equal(torch.cat([s.reference for s in shards]), pairs.reference)
    assert torch.equal(torch.cat([s.positive for s in shards]), pairs.positive)
    assert torch.equal(torch.cat([s.labels for s in shards]), pairs.labels)
    assert torch.equal(torch.cat([s.negative for s in shards]), pairs.negative)
    with pytest.raises(ValueError, match="world_size=3"):
        pairs.shard(0, 3)
