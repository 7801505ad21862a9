"""Time-series samplers against their definitions: time offsets, behaviour targets, labels, sessions, margins."""

import numpy as np
import pytest
import torch
from scipy import stats

from contrastive_seq.data import synthetic_place_cell_sessions, synthetic_place_cells
from contrastive_seq.sampling import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
    MultiSessionSampler,
    TimeContrastiveSampler,
)
from contrastive_seq.sampling.behaviour import NearestTimeIndex
from contrastive_seq.sampling.multisession import random_derangement


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_uniform(counts, p_min=1e-4):
    """Chi-square goodness of fit of ``counts`` to the uniform distribution over their bins."""
    counts = np.asarray(counts, dtype=float)
    assert counts.min() > 0, "a bin was never drawn"
    assert stats.chisquare(counts).pvalue > p_min


def uniform_labels(length, k, seed, scale=10.0):
    return torch.rand(length, k, generator=gen(seed)) * scale


def interior(labels, margin, scale=10.0):
    """Rows whose labels lie at least ``margin`` from the edges of the box [0, scale]^k."""
    return ((labels > margin) & (labels < scale - margin)).all(1)


RECORDING = synthetic_place_cells(10, 400, seed=0, lap_timepoints=40.0)
SESSIONS = synthetic_place_cell_sessions((5, 7, 6), num_timepoints=(300, 200, 250), seed=0, lap_timepoints=40.0)


def build(kind, left=0, right=0, num_negatives=None):
    """A sampler of each kind over small place-cell data, with the given margins."""
    margins = {"left_context": left, "right_context": right, "num_negatives": num_negatives}
    continuous, discrete = RECORDING.continuous, RECORDING.discrete
    return {
        "time": lambda: TimeContrastiveSampler(len(RECORDING), (1, 4), **margins),
        "delta": lambda: ContinuousBehaviourSampler(continuous, "delta", 0.05, **margins),
        "time_delta": lambda: ContinuousBehaviourSampler(continuous, "time_delta", time_delta=3, **margins),
        "discrete": lambda: DiscreteBehaviourSampler(discrete, **margins),
        "mixed": lambda: MixedBehaviourSampler(discrete, continuous[:, :1], "delta", 0.05, **margins),
        "hybrid": lambda: HybridSampler(ContinuousBehaviourSampler(continuous, **margins), time_offset=5),
        "multisession": lambda: MultiSessionSampler([r.continuous for r in SESSIONS], **margins),
    }[kind]()


KINDS = ["time", "delta", "time_delta", "discrete", "mixed", "hybrid", "multisession"]


# ---------------------------------------------------------------- contract: valid, reproducible, no global RNG


@pytest.mark.parametrize("kind", KINDS)
def test_every_index_has_a_window_inside_its_recording(kind):
    left, right = 7, 4
    sampler = build(kind, left, right)
    g = gen(1)
    batches = [sampler.sample(96, g) for _ in range(60)]
    if kind == "multisession":
        offsets = sampler.offsets
        for pairs in batches:
            for name in ("reference", "positive", "negative"):
                index = getattr(pairs, name).flatten()
                session = torch.searchsorted(offsets[1:], index, right=True)
                time = index - offsets[session]
                length = offsets[session + 1] - offsets[session]
                assert bool((time >= left).all() and (time < length - right).all()), name
        return
    names = ("reference", "positive", "negative")
    everything = {name: torch.cat([getattr(p, name).flatten() for p in batches]) for name in names}
    for name, index in everything.items():
        assert int(index.min()) >= left and int(index.max()) < len(RECORDING) - right, name
    # the margins are reached, not just respected: negatives cover every valid time point
    assert int(everything["negative"].min()) == left and int(everything["negative"].max()) == len(RECORDING) - right - 1


@pytest.mark.parametrize("kind", KINDS)
def test_draws_are_reproducible_and_leave_the_global_rng_alone(kind):
    sampler = build(kind)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = sampler.sample(48, gen(5)), sampler.sample(48, gen(5)), sampler.sample(48, gen(6))
    assert torch.equal(before, torch.get_rng_state())
    for name in ("reference", "positive", "negative"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.reference, c.reference)


@pytest.mark.parametrize("kind", ["time", "delta", "discrete", "mixed", "hybrid"])
def test_references_and_shared_negatives_are_uniform_over_valid_time(kind):
    sampler = build(kind, left=3, right=2, num_negatives=200)
    g = gen(2)
    references, negatives = torch.zeros(400, dtype=torch.long), torch.zeros(400, dtype=torch.long)
    for _ in range(100):
        pairs = sampler.sample(200, g)
        assert pairs.negative.shape == (200,)  # one shared set for the batch
        references += torch.bincount(pairs.reference, minlength=400)
        negatives += torch.bincount(pairs.negative, minlength=400)
    assert_uniform(negatives[3:398])
    assert_uniform(references[sampler.reference_times.start : sampler.reference_times.stop])
    assert int(references.sum() - references[sampler.reference_times.start : sampler.reference_times.stop].sum()) == 0


def test_number_of_negatives_defaults_to_the_batch_size():
    assert build("delta").sample(33, gen()).negative.shape == (33,)
    assert build("delta", num_negatives=7).sample(33, gen()).negative.shape == (7,)


# ---------------------------------------------------------------- time


def test_time_positive_is_the_reference_plus_a_fixed_offset():
    sampler = TimeContrastiveSampler(100, time_offset=10, left_context=2, right_context=3)
    pairs = sampler.sample(5000, gen())
    assert torch.equal(pairs.positive[:, 0], pairs.reference + 10)
    assert int(pairs.reference.min()) == 2 and int(pairs.reference.max()) == 100 - 3 - 10 - 1
    assert pairs.labels is None


def test_time_offset_range_is_drawn_uniformly_inclusive():
    sampler = TimeContrastiveSampler(1000, time_offset=(2, 5))
    pairs = sampler.sample(20_000, gen(3))
    offset = pairs.positive[:, 0] - pairs.reference
    assert set(offset.unique().tolist()) == {2, 3, 4, 5}
    assert_uniform(torch.bincount(offset)[2:])
    assert int(pairs.positive.max()) <= 999


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"time_offset": 0}, "time_offset must be an int >= 1"),
        ({"time_offset": (5, 2)}, "time_offset must be an int >= 5"),
        ({"time_offset": (1, 2, 3)}, "time_offset must be an int or a"),
        ({"time_offset": 30}, "time_offset=30 leaves no reference"),
        ({"left_context": 20, "right_context": 10}, "too short for the receptive field"),
        ({"left_context": -1}, "left_context must be an int >= 0"),
        ({"num_negatives": 0}, "num_negatives must be an int >= 1"),
    ],
)
def test_time_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TimeContrastiveSampler(30, **kwargs)


# ---------------------------------------------------------------- continuous behaviour


def test_delta_positive_label_is_the_reference_label_plus_gaussian_noise():
    delta, k = 0.3, 2
    labels = uniform_labels(40_000, k, seed=4)
    sampler = ContinuousBehaviourSampler(labels, mode="delta", delta=delta)
    pairs = sampler.sample(8192, gen(5))
    keep = interior(labels[pairs.reference], 5 * delta)  # targets almost never leave the data
    gap = labels[pairs.positive[keep, 0]] - labels[pairs.reference[keep]]
    # nearest-neighbour spacing (~0.03 here) adds a little on top of δ² k
    assert float(gap.square().sum(1).mean()) == pytest.approx(delta**2 * k, rel=0.08)
    for j in range(k):
        assert stats.kstest(gap[:, j].numpy() / delta, "norm").pvalue > 1e-3
    assert abs(float(gap.mean(0).abs().max())) < 0.03


def test_time_delta_positive_label_moves_like_the_empirical_label_changes():
    # labels on an integer lattice: every target is a label that exists, so the gap is exactly the drawn change
    g = gen(6)
    steps = torch.multinomial(torch.tensor([0.2, 0.3, 0.5]), 30_000, replacement=True, generator=g) - 1
    walk = 20 - ((torch.cumsum(steps, 0) % 40) - 20).abs()  # a walk folded into 0..20: steps stay in {-1, 0, 1}
    labels = walk.float().unsqueeze(1)
    lag = 2
    sampler = ContinuousBehaviourSampler(labels, mode="time_delta", time_delta=lag)
    pairs = sampler.sample(20_000, gen(7))
    keep = (labels[pairs.reference, 0] >= lag) & (labels[pairs.reference, 0] <= 20 - lag)
    gap = (labels[pairs.positive[keep, 0]] - labels[pairs.reference[keep]]).long().flatten()
    changes = (labels[lag:] - labels[:-lag]).long().flatten()
    values = torch.arange(-2, 3)
    observed = torch.stack([(gap == v).sum() for v in values]).numpy()
    expected = torch.stack([(changes == v).float().mean() for v in values]).numpy() * observed.sum()
    assert set(gap.unique().tolist()) <= set(values.tolist())
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_the_reference_itself_is_not_excluded_as_in_cebra():
    labels = torch.randperm(500, generator=gen(8)).float().unsqueeze(1)  # distinct labels
    pairs = ContinuousBehaviourSampler(labels, mode="delta", delta=1e-4).sample(256, gen(9))
    assert torch.equal(pairs.positive[:, 0], pairs.reference)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"mode": "gaussian"}, ValueError, "mode must be one of"),
        ({"mode": "delta", "delta": 0}, ValueError, "delta must be a finite number > 0"),
        ({"time_delta": 0}, ValueError, "time_delta must be an int >= 1"),
        ({"time_delta": 50}, ValueError, "time_delta=50 must be shorter than a recording"),
        ({"continuous": torch.full((50, 2), float("nan"))}, ValueError, "continuous contains NaN"),
        ({"continuous": torch.rand(50, 2, 2)}, ValueError, r"continuous must have shape \(50, k\)"),
        ({"continuous": torch.ones(50, 2, dtype=torch.bool)}, TypeError, "continuous must hold floating"),
        ({"right_context": 50}, ValueError, "too short for the receptive field"),
    ],
)
def test_continuous_sampler_rejects_bad_arguments(kwargs, error, match):
    arguments = {"continuous": torch.rand(50, 2)} | kwargs
    with pytest.raises(error, match=match):
        ContinuousBehaviourSampler(**arguments)


# ---------------------------------------------------------------- discrete, mixed, hybrid


def test_discrete_positive_is_another_valid_time_point_with_the_same_label():
    discrete = torch.randint(0, 4, (300,), generator=gen(10))
    sampler = DiscreteBehaviourSampler(discrete, left_context=5, right_context=5)
    pairs = sampler.sample(4096, gen(11))
    assert torch.equal(discrete[pairs.positive[:, 0]], discrete[pairs.reference])
    assert torch.equal(pairs.labels, discrete[pairs.reference])
    assert bool((pairs.positive[:, 0] != pairs.reference).all())
    assert int(pairs.positive.min()) >= 5 and int(pairs.positive.max()) < 295


def test_discrete_positive_is_uniform_over_the_class():
    discrete = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1])
    sampler = DiscreteBehaviourSampler(discrete, left_context=1)  # valid: times 1..8
    pairs = sampler.sample(30_000, gen(12))
    from_two = pairs.positive[pairs.reference == 2, 0]
    counts = torch.bincount(from_two, minlength=9)
    assert counts[[0, 2, 3, 7]].sum() == 0  # not itself, not the other class, not outside the margin
    assert_uniform(counts[[1, 4, 5, 6, 8]])


def test_discrete_sampler_refuses_labels_without_a_partner():
    with pytest.raises(ValueError, match=r"discrete, at the valid time points 0\.\.2: .*single sample"):
        DiscreteBehaviourSampler(torch.tensor([0, 0, 1]))
    pairs = DiscreteBehaviourSampler(torch.tensor([0, 0, 1]), allow_singletons=True).sample(50, gen())
    assert torch.equal(pairs.positive[pairs.reference == 2, 0], pairs.reference[pairs.reference == 2])
    with pytest.raises(TypeError, match="discrete must hold integer labels"):
        DiscreteBehaviourSampler(torch.rand(10))


def test_mixed_positive_shares_the_label_and_is_close_in_the_continuous_variables():
    delta, k = 0.3, 2
    discrete = torch.randint(0, 3, (60_000,), generator=gen(13))
    labels = uniform_labels(60_000, k, seed=14)
    sampler = MixedBehaviourSampler(discrete, labels, mode="delta", delta=delta)
    pairs = sampler.sample(8192, gen(15))
    assert torch.equal(discrete[pairs.positive[:, 0]], discrete[pairs.reference])
    assert torch.equal(pairs.labels, discrete[pairs.reference])
    keep = interior(labels[pairs.reference], 5 * delta)
    gap = labels[pairs.positive[keep, 0]] - labels[pairs.reference[keep]]
    assert float(gap.square().sum(1).mean()) == pytest.approx(delta**2 * k, rel=0.1)


def test_hybrid_column_zero_is_the_time_positive_and_column_one_the_behaviour_positive():
    discrete = torch.randint(0, 3, (500,), generator=gen(16))
    sampler = HybridSampler(DiscreteBehaviourSampler(discrete, left_context=2, right_context=1), time_offset=(3, 6))
    pairs = sampler.sample(2048, gen(17))
    assert pairs.positive.shape == (2048, 2)
    offset = pairs.positive[:, 0] - pairs.reference
    assert int(offset.min()) == 3 and int(offset.max()) == 6
    assert torch.equal(discrete[pairs.positive[:, 1]], discrete[pairs.reference])
    assert bool((pairs.positive[:, 1] != pairs.reference).all())
    assert int(pairs.reference.max()) <= 500 - 1 - 6 - 1 and int(pairs.positive.max()) <= 498
    with pytest.raises(TypeError, match="behaviour must be a ContinuousBehaviourSampler"):
        HybridSampler(TimeContrastiveSampler(100))


# ---------------------------------------------------------------- multi-session


def test_multisession_blocks_pair_each_session_with_another_through_behaviour():
    delta, k, lengths = 0.3, 2, (30_000, 20_000, 25_000)
    labels = [uniform_labels(n, k, seed=20 + s) for s, n in enumerate(lengths)]
    sampler = MultiSessionSampler(labels, mode="delta", delta=delta, num_negatives=50)
    offsets = sampler.offsets
    assert offsets.tolist() == [0, 30_000, 50_000, 75_000]
    everything = torch.cat(labels)
    g = gen(21)
    gaps, derangements = [], []
    for _ in range(30):
        pairs = sampler.sample(3 * 400, g)
        session_of = lambda index: torch.searchsorted(offsets[1:], index, right=True)  # noqa: E731
        reference_session = session_of(pairs.reference).reshape(3, 400)
        positive_session = session_of(pairs.positive[:, 0]).reshape(3, 400)
        assert torch.equal(reference_session, torch.arange(3).unsqueeze(1).expand(3, 400))
        sigma = positive_session[:, 0]
        assert bool((positive_session == sigma.unsqueeze(1)).all()) and bool((sigma != torch.arange(3)).all())
        derangements.append(tuple(sigma.tolist()))
        assert torch.equal(session_of(pairs.negative).reshape(3, 50), torch.arange(3).unsqueeze(1).expand(3, 50))
        keep = interior(everything[pairs.reference], 5 * delta)
        gaps.append(everything[pairs.positive[keep, 0]] - everything[pairs.reference[keep]])
    gap = torch.cat(gaps)
    assert float(gap.square().sum(1).mean()) == pytest.approx(delta**2 * k, rel=0.08)
    assert set(derangements) == {(1, 2, 0), (2, 0, 1)}  # the only derangements of three sessions


def test_random_derangement_is_uniform():
    g = gen(22)
    draws = [tuple(random_derangement(4, g).tolist()) for _ in range(9000)]
    assert all(all(p[i] != i for i in range(4)) for p in draws)
    counts = np.unique(np.array(draws), axis=0, return_counts=True)[1]
    assert len(counts) == 9  # derangements of four elements
    assert_uniform(counts)


def test_multisession_negatives_are_uniform_within_each_session():
    sampler = MultiSessionSampler([torch.rand(40, 1), torch.rand(60, 1)], left_context=2, right_context=3)
    counts = torch.zeros(100, dtype=torch.long)
    g = gen(23)
    for _ in range(200):
        counts += torch.bincount(sampler.sample(200, g).negative, minlength=100)
    assert_uniform(counts[2:37])
    assert_uniform(counts[42:97])
    assert int(counts[:2].sum() + counts[37:42].sum() + counts[97:].sum()) == 0


def test_multisession_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least two"):
        MultiSessionSampler([torch.rand(10, 2)])
    with pytest.raises(ValueError, match=r"same k in every session.*\[2, 3\]"):
        MultiSessionSampler([torch.rand(10, 2), torch.rand(10, 3)])
    with pytest.raises(ValueError, match=r"continuous\[1\] contains NaN"):
        MultiSessionSampler([torch.rand(10, 2), torch.full((10, 2), float("nan"))])
    with pytest.raises(ValueError, match=r"continuous\[1\] of 4 time points is too short"):
        MultiSessionSampler([torch.rand(10, 2), torch.rand(4, 2)], left_context=2, right_context=2)
    with pytest.raises(ValueError, match="multiple of the number of sessions"):
        MultiSessionSampler([torch.rand(10, 2), torch.rand(10, 2)]).sample(5, gen())


@pytest.mark.parametrize("data", ["uniform", "two-valued column", "lattice with repeats"])
def test_nearest_time_index_finds_the_nearest_label_like_a_brute_force_search(data):
    g = gen(30)
    labels = {
        "uniform": torch.rand(3000, 2, generator=g),
        "two-valued column": torch.stack(
            [torch.rand(3000, generator=g), torch.randint(0, 2, (3000,), generator=g).float()], dim=1
        ),
        "lattice with repeats": torch.randint(0, 6, (3000, 2), generator=g).float(),
    }[data]
    times = torch.arange(100, 2900)
    index = NearestTimeIndex(labels, range(100, 2900))
    targets = labels[torch.randint(0, 3000, (400,), generator=g)] + 0.2 * torch.randn(400, 2, generator=g)
    found = index.nearest(targets)
    assert bool(((found >= 100) & (found < 2900)).all())
    candidates = labels[times].double()
    for target, time in zip(targets.double(), found.tolist()):  # the obvious search, one target at a time
        nearest = float((candidates - target).norm(dim=1).min())
        assert float((target - labels[time].double()).norm()) == pytest.approx(nearest, abs=1e-8)
    subset = NearestTimeIndex(labels, times[::7])  # an explicit set of time points
    assert bool(torch.isin(subset.nearest(targets), times[::7]).all())
