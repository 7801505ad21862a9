"""Window views: windows equal the slices they stand for, in memory and on disk (one read), per session."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from contrastive_seq.data import (
    HDF5TimeSeries,
    Recording,
    load_recording,
    load_recordings,
    save_recordings,
    synthetic_place_cell_sessions,
)
from contrastive_seq.models import make_time_series_encoder
from contrastive_seq.sampling import (
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MultiSessionSampler,
    PairIndex,
    TimeContrastiveSampler,
)
from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.views import MultiSessionWindowViews, WindowViews


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def window_by_hand(neural, t, left, right):
    """The window of time t, from its definition: rows t - left .. t + right, as (channels, W)."""
    return torch.stack([neural[t + d] for d in range(-left, right + 1)], dim=1)


def recording(length=120, channels=5, seed=0):
    g = gen(seed)
    return Recording(torch.randn(length, channels, generator=g), discrete=torch.randint(0, 3, (length,), generator=g))


class CountingReader:
    """A RowReader around an HDF5TimeSeries that records every read."""

    def __init__(self, inner):
        self.inner, self.shape, self.dtype, self.reads = inner, inner.shape, inner.dtype, []

    def read_rows(self, rows):
        self.reads.append(np.array(rows))
        return self.inner.read_rows(rows)


@pytest.mark.parametrize("left,right", [(0, 0), (3, 2), (5, 4)])
def test_windows_are_the_slices_around_each_index(left, right):
    data = recording()
    sampler = HybridSampler(DiscreteBehaviourSampler(data.discrete, left, right, num_negatives=7), time_offset=2)
    pairs = sampler.sample(16, gen(1))
    batch = WindowViews(left, right)(data, pairs, gen())
    width = left + right + 1
    assert batch["reference"].shape == (16, 5, width)
    assert batch["positive"].shape == (2, 16, 5, width)
    assert batch["negative"].shape == (7, 5, width)
    assert torch.equal(batch["index"], pairs.reference) and torch.equal(batch["labels"], pairs.labels)
    for i in range(16):
        assert torch.equal(batch["reference"][i], window_by_hand(data.neural, int(pairs.reference[i]), left, right))
        for p in range(2):
            expected = window_by_hand(data.neural, int(pairs.positive[i, p]), left, right)
            assert torch.equal(batch["positive"][p, i], expected)
    for m in range(7):
        assert torch.equal(batch["negative"][m], window_by_hand(data.neural, int(pairs.negative[m]), left, right))


def test_per_reference_negatives_and_no_negatives_keep_their_shapes():
    data = recording()
    reference = torch.tensor([10, 20])
    pairs = PairIndex(reference, (reference + 1).unsqueeze(1), negative=torch.tensor([[30, 31, 32], [40, 41, 42]]))
    batch = WindowViews(1, 1)(data, pairs, gen())
    assert batch["negative"].shape == (2, 3, 5, 3)
    assert torch.equal(batch["negative"][1, 2], window_by_hand(data.neural, 42, 1, 1))
    assert "negative" not in WindowViews(1, 1)(data, PairIndex(reference, reference.unsqueeze(1)), gen())


def test_windows_from_disk_match_memory_and_come_from_one_read_of_unique_sorted_rows(tmp_path):
    data = recording(300, 4)
    lazy = load_recording(save_recordings(tmp_path / "rec.h5", data), in_memory=False)
    reader = CountingReader(lazy.neural)
    lazy.neural = reader
    left, right = 4, 3
    pairs = TimeContrastiveSampler(300, (1, 3), left, right).sample(32, gen(2))
    views = WindowViews(left, right)
    from_disk, in_memory = views(lazy, pairs, gen()), views(data, pairs, gen())
    for key in ("reference", "positive", "negative"):
        assert torch.equal(from_disk[key], in_memory[key])
    assert len(reader.reads) == 1
    rows = reader.reads[0]
    needed = torch.cat([pairs.reference, pairs.positive.flatten(), pairs.negative])
    expected = torch.unique(needed.unsqueeze(1) + torch.arange(-left, right + 1)).numpy()
    assert np.array_equal(rows, expected)  # exactly the rows of the batch's windows, sorted, once each
    reader.inner.close()


def test_indices_whose_window_leaves_the_recording_are_refused():
    data = recording(50)
    views = WindowViews(left_context=3, right_context=2)
    good = torch.tensor([3, 47])
    with pytest.raises(ValueError, match=r"pairs.positive holds time points in \[2, 4\].*3\.\.47"):
        views(data, PairIndex(good, torch.tensor([[2], [4]])), gen())
    with pytest.raises(ValueError, match=r"pairs.reference holds time points in \[3, 48\]"):
        views(data, PairIndex(torch.tensor([3, 48]), good.unsqueeze(1)), gen())
    with pytest.raises(TypeError, match="dataset must be a Recording"):
        views(data.neural, PairIndex(good, good.unsqueeze(1)), gen())
    with pytest.raises(ValueError, match="left_context must be an int >= 0"):
        WindowViews(-1, 0)


def test_views_sized_for_an_encoder_feed_it():
    torch.manual_seed(0)
    encoder = make_time_series_encoder("offset10", 5, 3, 8)
    data = recording(200, 5)
    views = WindowViews.for_encoder(encoder)
    assert (views.left_context, views.right_context, views.window) == (5, 4, 10)
    sampler = ContinuousBehaviourSampler(torch.rand(200, 2, generator=gen(3)), left_context=5, right_context=4)
    batch = views(data, sampler.sample(8, gen(4)), gen())
    assert encoder(batch["reference"]).shape == (8, 3)
    assert encoder(batch["positive"][0]).shape == (8, 3)


def test_batches_from_an_hdf5_file_in_dataloader_workers(tmp_path):
    data = recording(400, 3)
    lazy = load_recording(save_recordings(tmp_path / "rec.h5", data), in_memory=False)
    assert isinstance(lazy.neural, HDF5TimeSeries)
    sampler = DiscreteBehaviourSampler(data.discrete, 2, 2)
    views = WindowViews(2, 2)
    steps = SampledBatches(lazy, sampler, views, batch_size=16, num_steps=4, seed=3)
    loader = DataLoader(steps, batch_size=None, num_workers=2)
    for step, batch in enumerate(loader):  # every worker opens the file itself
        expected = SampledBatches(data, sampler, views, batch_size=16, num_steps=4, seed=3)[step]
        assert torch.equal(batch["reference"], expected["reference"])
        assert torch.equal(batch["positive"], expected["positive"])


# ---------------------------------------------------------------- multi-session


def multisession(tmp_path=None):
    sessions = synthetic_place_cell_sessions((4, 6, 5), num_timepoints=(200, 150, 180), seed=2, lap_timepoints=40.0)
    if tmp_path is None:
        return sessions
    return load_recordings(save_recordings(tmp_path / "sessions.h5", sessions), in_memory=False)


def test_multisession_views_give_one_block_per_session_routed_by_sigma():
    sessions = multisession()
    left, right = 2, 3
    labels = [r.continuous for r in sessions]
    sampler = MultiSessionSampler(labels, left_context=left, right_context=right, num_negatives=4)
    pairs = sampler.sample(3 * 6, gen(5))
    batch = MultiSessionWindowViews(left, right)(sessions, pairs, gen())
    sigma = batch["positive_session"]
    assert sorted(sigma.tolist()) == [0, 1, 2] and bool((sigma != torch.arange(3)).all())
    channels = [4, 6, 5]
    for s in range(3):
        assert batch["reference"][s].shape == (6, channels[s], 6)
        assert batch["negative"][s].shape == (4, channels[s], 6)
        assert batch["positive"][s].shape == (1, 6, channels[int(sigma[s])], 6)
        for i in range(6):
            session, time = sessions.locate(pairs.reference[s * 6 + i])
            assert int(session) == s
            assert torch.equal(batch["reference"][s][i], window_by_hand(sessions[s].neural, int(time), left, right))
            session, time = sessions.locate(pairs.positive[s * 6 + i, 0])
            assert int(session) == int(sigma[s])
            expected = window_by_hand(sessions[int(session)].neural, int(time), left, right)
            assert torch.equal(batch["positive"][s][0, i], expected)
        for m in range(4):
            session, time = sessions.locate(pairs.negative[s * 4 + m])
            assert torch.equal(batch["negative"][s][m], window_by_hand(sessions[s].neural, int(time), left, right))
    assert torch.equal(batch["index"], pairs.reference)


def test_multisession_views_from_disk_match_memory(tmp_path):
    in_memory, on_disk = multisession(), multisession(tmp_path)
    sampler = MultiSessionSampler([r.continuous for r in in_memory], left_context=1, right_context=1)
    pairs = sampler.sample(30, gen(6))
    views = MultiSessionWindowViews(1, 1)
    a, b = views(in_memory, pairs, gen()), views(on_disk, pairs, gen())
    assert torch.equal(a["positive_session"], b["positive_session"])
    for key in ("reference", "positive", "negative"):
        for x, y in zip(a[key], b[key]):
            assert torch.equal(x, y)


def test_multisession_views_refuse_batches_off_the_block_layout():
    sessions = multisession()
    views = MultiSessionWindowViews(0, 0)
    reference = torch.tensor([0, 1, 200, 201, 350, 351])
    with pytest.raises(ValueError, match="pairs.positive block 0 mixes sessions"):
        views(sessions, PairIndex(reference, torch.tensor([[0], [200], [0], [1], [0], [1]])), gen())
    with pytest.raises(ValueError, match="pairs.reference block 0 must lie in session 0"):
        views(sessions, PairIndex(reference.flip(0), reference.unsqueeze(1)), gen())
    with pytest.raises(ValueError, match="must split into 3 equal session blocks"):
        views(sessions, PairIndex(reference[:4], reference[:4].unsqueeze(1)), gen())
    with pytest.raises(TypeError, match="dataset must be a MultiSessionRecording"):
        views(sessions[0], PairIndex(reference, reference.unsqueeze(1)), gen())
