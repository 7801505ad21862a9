"""Segments (trials, sessions glued in time): no window and no time positive crosses a segment boundary.

Checked against the definition: the window of ``t`` is ``t - left .. t + right`` and lies in one
segment when every id in it is equal; a time positive ``t + Δ`` shares the segment of ``t`` when
every id in ``t .. t + Δ`` is equal; a ``time_delta`` label change is measured inside one segment
(labels jump by 1000 at each boundary, so a change across one would show). Many batches are drawn
from every sampler that pairs by time. Each check was seen to fail with the segments left out of the
valid times and of the behaviour targets.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from contrastive_seq.data import Recording
from contrastive_seq.sampling import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
    TimeContrastiveSampler,
)
from contrastive_seq.sampling.behaviour import BehaviourTargets
from contrastive_seq.sampling.time import valid_times
from contrastive_seq.views.windows import WindowViews

LEFT, RIGHT = 3, 2
# runs of 40, 7 (too short for a 6-wide window plus offsets), 2 (too short for any window), 60, 25;
# the id 1 comes back after id 2: a boundary is any change of id
SEGMENT_IDS = torch.cat([torch.full((n,), i) for n, i in ((40, 1), (7, 2), (2, 1), (60, 3), (25, 4))])
T = SEGMENT_IDS.numel()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def in_one_segment(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """For each pair, whether every id in ``first .. last`` (inclusive) is equal: the definition, by a loop."""
    ids = SEGMENT_IDS.tolist()
    return torch.tensor([len(set(ids[a : b + 1])) == 1 for a, b in zip(first.tolist(), last.tolist())])


def valid_by_definition() -> list[int]:
    return [t for t in range(LEFT, T - RIGHT) if bool(in_one_segment(torch.tensor([t - LEFT]), torch.tensor([t + RIGHT])))]


def windows_inside(times: torch.Tensor) -> bool:
    times = times.reshape(-1)
    return bool(in_one_segment(times - LEFT, times + RIGHT).all())


def labels():
    """Continuous labels that jump by 1000 at each boundary, discrete ones alternating every 5 steps."""
    run = torch.cat([torch.zeros(1, dtype=torch.long), (SEGMENT_IDS[1:] != SEGMENT_IDS[:-1]).long().cumsum(0)])
    continuous = run.float().unsqueeze(1) * 1000 + torch.rand(T, 1, generator=gen(1))
    discrete = (torch.arange(T) // 5) % 2
    return continuous, discrete


def samplers():
    continuous, discrete = labels()
    margins = {"left_context": LEFT, "right_context": RIGHT, "segments": SEGMENT_IDS}
    time = TimeContrastiveSampler(T, time_offset=(1, 4), **margins)
    behaviour = ContinuousBehaviourSampler(continuous, mode="time_delta", time_delta=3, **margins)
    return {
        "time": time,
        "continuous": behaviour,
        "discrete": DiscreteBehaviourSampler(discrete, **margins),
        "mixed": MixedBehaviourSampler(discrete, continuous, time_delta=3, **margins),
        "hybrid": HybridSampler(behaviour, time_offset=4),
    }


def test_valid_times_are_the_windows_inside_one_segment():
    valid = valid_times(T, LEFT, RIGHT, SEGMENT_IDS)
    assert valid.as_tensor().tolist() == valid_by_definition()
    assert valid.rank(valid.as_tensor()).tolist() == list(range(len(valid)))


@pytest.mark.parametrize("kind", ["time", "continuous", "discrete", "mixed", "hybrid"])
def test_no_window_and_no_time_positive_crosses_a_segment(kind):
    sampler = samplers()[kind]
    generator = gen(0)
    for _ in range(50):
        pairs = sampler.sample(64, generator)
        for times in (pairs.reference, pairs.positive, pairs.negative):
            assert windows_inside(times)
        if kind in ("time", "hybrid"):
            assert bool(in_one_segment(pairs.reference, pairs.positive[:, 0]).all())
            assert bool((pairs.positive[:, 0] > pairs.reference).all())
        if kind in ("continuous", "mixed", "hybrid"):  # a time_delta label change across a boundary would jump by 1000
            continuous = labels()[0][:, 0]
            assert float((continuous[pairs.positive[:, -1]] - continuous[pairs.reference]).abs().max()) < 500


def test_references_are_uniform_over_the_valid_times():
    sampler = TimeContrastiveSampler(T, time_offset=2, left_context=LEFT, right_context=RIGHT, segments=SEGMENT_IDS)
    valid = valid_by_definition()
    expected = [t for t in valid if t + 2 in valid and bool(in_one_segment(torch.tensor([t]), torch.tensor([t + 2])))]
    references = torch.cat([sampler.sample(500, gen(seed)).reference for seed in range(20)])
    assert sorted(set(references.tolist())) == expected
    counts = torch.bincount(references, minlength=T)[expected].numpy()
    assert stats.chisquare(counts).pvalue > 1e-4


def test_time_delta_label_changes_stay_inside_a_segment():
    continuous, _ = labels()
    lengths = [40, 7, 2, 60, 25]
    targets = BehaviourTargets(continuous, mode="time_delta", time_delta=5, session_lengths=lengths)
    reference = torch.randint(T, (4000,), generator=gen(2))
    change = targets.draw(reference, gen(3)) - continuous[reference]
    assert float(change.abs().max()) < 1.0  # a change across a boundary would be about 1000


def test_window_views_refuse_a_window_across_a_boundary_and_accept_the_segment_aware_sampler():
    recording = Recording(torch.randn(T, 4), segments=SEGMENT_IDS)
    views = WindowViews(LEFT, RIGHT)
    blind = TimeContrastiveSampler(T, time_offset=1, left_context=LEFT, right_context=RIGHT)
    with pytest.raises(ValueError, match="crosses a segment boundary.*segments=recording.segments"):
        for seed in range(20):
            views(recording, blind.sample(64, gen(seed)), gen(0))
    aware = TimeContrastiveSampler(T, time_offset=1, left_context=LEFT, right_context=RIGHT, segments=recording.segments)
    batch = views(recording, aware.sample(64, gen(0)), gen(0))
    assert batch["reference"].shape == (64, 4, LEFT + RIGHT + 1)


def test_segments_too_short_for_every_window_are_an_error_naming_the_need():
    with pytest.raises(ValueError, match="every segment .* at least 6 time points, the longest has 5"):
        TimeContrastiveSampler(20, left_context=LEFT, right_context=RIGHT, segments=torch.arange(20) // 5)
    with pytest.raises(ValueError, match="segments must have shape"):
        TimeContrastiveSampler(20, segments=torch.zeros(19, dtype=torch.long))


def test_without_segments_draws_are_unchanged():
    """One segment covering the recording gives the same draws as none (the historical stream)."""
    plain = TimeContrastiveSampler(100, time_offset=(1, 3), left_context=2, right_context=1)
    one = TimeContrastiveSampler(100, time_offset=(1, 3), left_context=2, right_context=1, segments=np.zeros(100, np.int64))
    a, b = plain.sample(32, gen(5)), one.sample(32, gen(5))
    assert torch.equal(a.reference, b.reference) and torch.equal(a.positive, b.positive)
    assert torch.equal(a.negative, b.negative)
