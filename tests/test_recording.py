"""Recordings: checked containers, global indexing of sessions, HDF5 round trips and errors, synthetic place cells."""

import os
import pickle

import h5py
import numpy as np
import pytest
import torch

import contrastive_seq.data.hdf5 as hdf5_module
from contrastive_seq.data import (
    HDF5TimeSeries,
    MultiSessionRecording,
    PlaceCellModel,
    Recording,
    load_recording,
    load_recordings,
    save_recordings,
    synthetic_place_cell_sessions,
    synthetic_place_cells,
)
from contrastive_seq.data.synthetic import LEFTWARD, RIGHTWARD, linear_track


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def small_recording(length=50, channels=3, k=2, name="session0", seed=0):
    g = gen(seed)
    return Recording(
        torch.randn(length, channels, generator=g),
        torch.rand(length, k, generator=g),
        torch.randint(0, 3, (length,), generator=g),
        name=name,
    )


# ---------------------------------------------------------------- Recording


def test_recording_converts_dtypes_and_shares_float32_memory():
    neural = torch.randn(20, 4)
    recording = Recording(neural, np.arange(20.0), np.arange(20, dtype=np.int32) % 2)
    assert recording.neural.data_ptr() == neural.data_ptr()  # float32 is not copied
    assert recording.continuous.shape == (20, 1) and recording.continuous.dtype == torch.float32
    assert recording.discrete.dtype == torch.int64
    counts = Recording(np.random.default_rng(0).poisson(1.0, (20, 4)).astype(np.uint8))
    assert counts.neural.dtype == torch.float32 and counts.continuous is None and counts.discrete is None
    assert (len(recording), recording.num_channels, recording.num_continuous, recording.in_memory) == (20, 4, 1, True)
    assert torch.equal(recording.read_neural(5, 8), neural[5:8])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"neural": torch.randn(10)}, ValueError, r"neural must have shape \(time, channels\)"),
        ({"neural": torch.randn(0, 3)}, ValueError, r"neural must have shape \(time, channels\)"),
        ({"neural": torch.ones(10, 3, dtype=torch.bool)}, TypeError, "neural must hold integer or floating"),
        ({"neural": np.array([["a"]], dtype=object)}, TypeError, "neural must hold numbers"),
        ({"neural": [[1.0, 2.0]]}, TypeError, "neural must be a torch.Tensor"),
        ({"continuous": torch.rand(9, 2)}, ValueError, r"continuous must have shape \(10, k\)"),
        ({"continuous": torch.rand(10, 2, 2)}, ValueError, r"continuous must have shape \(10, k\)"),
        ({"discrete": torch.rand(10)}, TypeError, "discrete must hold integer labels"),
        ({"discrete": torch.zeros(11, dtype=torch.long)}, ValueError, r"discrete must have shape \(10,\)"),
        ({"name": "a/b"}, ValueError, "name must be a non-empty string"),
    ],
)
def test_recording_rejects_bad_input_naming_the_argument(kwargs, error, match):
    arguments = {"neural": torch.randn(10, 3)} | kwargs
    with pytest.raises(error, match=match):
        Recording(**arguments)


def test_recording_rejects_non_finite_values_and_says_where():
    neural = torch.randn(10, 3)
    neural[6, 1] = float("nan")
    with pytest.raises(ValueError, match="neural contains NaN or infinite values \\(first at time 6\\)"):
        Recording(neural)
    continuous = torch.rand(10, 2)
    continuous[2, 0] = float("inf")
    with pytest.raises(ValueError, match="continuous contains NaN or infinite values \\(first at time 2\\)"):
        Recording(torch.randn(10, 3), continuous)


# ---------------------------------------------------------------- sessions


def test_sessions_map_global_indices_to_session_and_time_and_back():
    sessions = MultiSessionRecording([small_recording(30, 3), small_recording(50, 5), small_recording(20, 4)])
    assert sessions.offsets.tolist() == [0, 30, 80, 100]
    assert len(sessions) == 100 and sessions.session_lengths == [30, 50, 20] and sessions.num_continuous == 2
    index = torch.randint(0, 100, (7, 9), generator=gen(1))
    session, time = sessions.locate(index)
    assert session.shape == index.shape
    for g, s, t in zip(index.flatten().tolist(), session.flatten().tolist(), time.flatten().tolist()):
        assert sessions.offsets[s] <= g < sessions.offsets[s + 1] and t == g - sessions.offsets[s]
        assert int(sessions.global_index(s, torch.tensor(t))) == g
    assert sessions.locate(torch.tensor([29, 30, 79, 80]))[0].tolist() == [0, 1, 1, 2]


def test_sessions_reject_unshared_behaviour_and_bad_indices():
    with pytest.raises(ValueError, match="same k"):
        MultiSessionRecording([small_recording(k=2), small_recording(k=3)])
    with pytest.raises(ValueError, match="discrete labels or none"):
        MultiSessionRecording([small_recording(), Recording(torch.randn(5, 2), torch.rand(5, 2))])
    with pytest.raises(ValueError, match="non-empty sequence"):
        MultiSessionRecording([])
    with pytest.raises(TypeError, match=r"sessions\[1\] must be a Recording"):
        MultiSessionRecording([small_recording(), torch.randn(5, 2)])
    sessions = MultiSessionRecording([small_recording(10), small_recording(10)])
    with pytest.raises(ValueError, match=r"index must lie in \[0, 20\)"):
        sessions.locate(torch.tensor([20]))
    with pytest.raises(ValueError, match=r"time must lie in \[0, 10\)"):
        sessions.global_index(1, torch.tensor([10]))


# ---------------------------------------------------------------- HDF5


def assert_same_recording(a, b):
    assert a.name == b.name
    assert torch.equal(a.read_neural(), b.read_neural())
    for field in ("continuous", "discrete"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None and y is None) or torch.equal(x, y)


def test_hdf5_round_trip_keeps_order_values_and_layout(tmp_path):
    sessions = [small_recording(40, 3, name="zeta"), small_recording(25, 6, name="alpha", seed=1)]
    path = save_recordings(tmp_path / "rec.h5", sessions)
    loaded = load_recordings(path)
    assert [r.name for r in loaded] == ["zeta", "alpha"]
    for original, back in zip(sessions, loaded):
        assert_same_recording(original, back)
        assert back.in_memory
    with h5py.File(path) as file:  # the documented layout
        assert file.attrs["format"] == "contrastive_seq.recordings" and file.attrs["format_version"] == 1
        assert file["sessions/zeta/neural"].shape == (40, 3) and file["sessions/zeta/neural"].fletcher32
        assert file["sessions/alpha/continuous"].dtype == np.float32
        assert file["sessions/alpha/discrete"].dtype == np.int64
    assert_same_recording(load_recording(path, "alpha"), sessions[1])


def test_hdf5_lazy_neural_stays_on_disk_and_reads_rows(tmp_path):
    original = small_recording(200, 4)
    path = save_recordings(tmp_path / "rec.h5", original)
    lazy = load_recording(path, in_memory=False)
    assert isinstance(lazy.neural, HDF5TimeSeries) and not lazy.in_memory
    assert lazy.neural.shape == (200, 4) and torch.equal(lazy.continuous, original.continuous)
    rows = np.array([3, 4, 5, 50, 199])
    assert torch.equal(lazy.neural.read_rows(rows), original.neural[rows])
    assert torch.equal(lazy.read_neural(10, 30), original.neural[10:30])
    with pytest.raises(ValueError, match="strictly increasing"):
        lazy.neural.read_rows(np.array([5, 3]))
    clone = pickle.loads(pickle.dumps(lazy.neural))  # what a DataLoader worker receives
    assert clone._file is None and torch.equal(clone.read_rows(rows), original.neural[rows])
    resaved = save_recordings(tmp_path / "again.h5", lazy)  # copied block by block from disk
    assert_same_recording(load_recording(resaved), original)
    lazy.neural.close()
    clone.close()


def test_hdf5_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "rec.h5"
    save_recordings(path, small_recording(30, name="first"))

    def fail(group, recording):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hdf5_module, "_write_neural", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_recordings(path, small_recording(30, name="second"))
    assert os.listdir(tmp_path) == ["rec.h5"]  # no temporary file left behind
    assert load_recording(path).name == "first"  # the old file is intact


def test_hdf5_refuses_duplicate_names(tmp_path):
    with pytest.raises(ValueError, match=r"distinct names.*\['a'\]"):
        save_recordings(tmp_path / "x.h5", [small_recording(name="a"), small_recording(name="a")])


def write_raw(path, sessions, order=None, version=1, fmt="contrastive_seq.recordings"):
    with h5py.File(path, "w") as file:
        if fmt is not None:
            file.attrs["format"] = fmt
        file.attrs["format_version"] = version
        group = file.create_group("sessions")
        group.attrs["order"] = list(sessions) if order is None else order
        for name, members in sessions.items():
            session = group.create_group(name)
            for member, values in members.items():
                session.create_dataset(member, data=values)
    return path


NEURAL = np.ones((10, 3), np.float32)


@pytest.mark.parametrize(
    "members,error,match",
    [
        ({"continuous": np.ones((10, 2))}, ValueError, r"rec.h5:/sessions/a/neural is missing"),
        ({"neural": np.ones(10)}, ValueError, r"/sessions/a/neural must have shape \(time, channels\)"),
        ({"neural": np.ones((10, 3), bool)}, TypeError, r"/sessions/a/neural must hold integer or floating"),
        ({"neural": NEURAL, "continuous": np.ones((9, 2))}, ValueError, r"/a/continuous must have shape \(10, k\)"),
        ({"neural": NEURAL, "discrete": np.ones(10)}, TypeError, r"/sessions/a/discrete must hold integer labels"),
        ({"neural": NEURAL, "discrete": np.ones((10, 2), int)}, ValueError, r"/a/discrete must have shape \(10,\)"),
        ({"neural": NEURAL, "behavior": np.ones(10)}, ValueError, r"/sessions/a holds unknown members \['behavior'\]"),
        (
            {"neural": NEURAL, "continuous": np.array([[0.0]] * 4 + [[np.nan]] + [[0.0]] * 5)},
            ValueError,
            r"/sessions/a/continuous contains NaN or infinite values \(first at time 4\)",
        ),
    ],
)
def test_hdf5_errors_name_the_dataset(tmp_path, members, error, match):
    path = write_raw(tmp_path / "rec.h5", {"a": members})
    with pytest.raises(error, match=match):
        load_recordings(path)


@pytest.mark.parametrize("in_memory", [True, False])
def test_hdf5_non_finite_neural_is_found_in_memory_and_on_disk(tmp_path, monkeypatch, in_memory):
    monkeypatch.setattr(hdf5_module, "_FINITE_CHECK_ELEMENTS", 6)  # scan in blocks of two rows
    neural = NEURAL.copy()
    neural[7, 2] = np.inf
    path = write_raw(tmp_path / "rec.h5", {"a": {"neural": neural}})
    with pytest.raises(ValueError, match=r"/sessions/a/neural contains NaN or infinite values \(first at time 7\)"):
        load_recordings(path, in_memory=in_memory)
    assert not load_recordings(path, in_memory=False, check_finite_values=False)[0].in_memory


def test_hdf5_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5 does not exist"):
        load_recordings(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="not a recordings file"):
        load_recordings(write_raw(tmp_path / "a.h5", {"a": {"neural": NEURAL}}, fmt=None))
    with pytest.raises(ValueError, match="format_version 2"):
        load_recordings(write_raw(tmp_path / "b.h5", {"a": {"neural": NEURAL}}, version=2))
    with pytest.raises(ValueError, match="attribute 'order' must list each session group once"):
        load_recordings(write_raw(tmp_path / "c.h5", {"a": {"neural": NEURAL}}, order=["a", "b"]))
    two = write_raw(tmp_path / "d.h5", {"a": {"neural": NEURAL}, "b": {"neural": NEURAL}})
    with pytest.raises(ValueError, match="holds 2 sessions"):
        load_recording(two)
    with pytest.raises(ValueError, match="session 'c' is not in"):
        load_recording(two, "c")


# ---------------------------------------------------------------- synthetic place cells


def test_linear_track_runs_laps_back_and_forth():
    position, direction = linear_track(5000, gen(), lap_timepoints=100.0, lap_jitter=0.2)
    assert position.shape == direction.shape == (5000,)
    assert float(position.min()) > 0 and float(position.max()) < 1
    step = position[1:] - position[:-1]
    same_lap = direction[1:] == direction[:-1]
    assert bool((step[same_lap & (direction[1:] == RIGHTWARD)] > 0).all())
    assert bool((step[same_lap & (direction[1:] == LEFTWARD)] < 0).all())
    turns = torch.nonzero(~same_lap).flatten()
    lap_lengths = (turns[1:] - turns[:-1]).float()
    assert float(lap_lengths.min()) >= 80 and float(lap_lengths.max()) <= 120  # 100 +- 20 %
    assert abs(float(lap_lengths.mean()) - 100) < 5


def test_place_cell_counts_are_poisson_with_the_model_rates():
    g = gen(3)
    position, direction = linear_track(20_000, g)
    model = PlaceCellModel.random(25, g, field_width=0.1, peak_rate=3.0)
    counts = model.sample(position, direction, g)
    rates = model.rates(position, direction)
    # per neuron, (sum of counts - sum of rates) / sqrt(sum of rates) is approximately N(0, 1)
    z = (counts - rates).sum(0) / rates.sum(0).sqrt()
    assert float(z.abs().max()) < 4.5
    # and the rates follow the formula at a few hand-picked points
    p, d = torch.tensor([0.3]), torch.tensor([RIGHTWARD])
    for i in range(3):
        gain = 1.0 if int(model.preferred_direction[i]) == RIGHTWARD else 1 - model.direction_selectivity
        expected = model.background_rate + 3.0 * gain * np.exp(-((0.3 - float(model.centres[i])) ** 2) / (2 * 0.1**2))
        assert float(model.rates(p, d)[0, i]) == pytest.approx(expected, rel=1e-5)


def test_synthetic_place_cells_are_seeded_and_carry_behaviour():
    a = synthetic_place_cells(12, 3000, seed=4)
    b = synthetic_place_cells(12, 3000, seed=4)
    c = synthetic_place_cells(12, 3000, seed=5)
    assert torch.equal(a.neural, b.neural) and torch.equal(a.continuous, b.continuous)
    assert not torch.equal(a.neural, c.neural)
    assert a.neural.shape == (3000, 12) and a.continuous.shape == (3000, 2)
    assert torch.equal(a.continuous[:, 1].long(), a.discrete)
    assert synthetic_place_cells(5, 100, discrete_direction=False).discrete is None
    # place tuning: the firing of every cell depends on position (mean count varies across track bins)
    bins = (a.continuous[:, 0] * 10).long()
    per_bin = torch.stack([a.neural[bins == b].mean(0) for b in range(10)])
    assert bool((per_bin.max(0).values > 3 * per_bin.min(0).values).all())


def test_synthetic_sessions_share_behaviour_but_not_neurons():
    sessions = synthetic_place_cell_sessions((8, 16, 24), num_timepoints=(1000, 1500, 800), seed=1)
    assert [r.num_channels for r in sessions] == [8, 16, 24]
    assert sessions.session_lengths == [1000, 1500, 800] and sessions.num_continuous == 2
    assert [r.name for r in sessions] == ["session0", "session1", "session2"]
    assert not torch.equal(sessions[0].continuous[:800], sessions[2].continuous)  # own laps
    with pytest.raises(ValueError, match="one entry per session"):
        synthetic_place_cell_sessions((8, 16), num_timepoints=(10, 20, 30))
