"""load_timeseries: the user's .npz / CSV / HDF5 files, only the labels named, errors naming file and key."""

import h5py
import numpy as np
import pytest
import torch

from contrastive_seq.data import Recording, load_timeseries, save_recordings

T = 120


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "spikes": rng.poisson(2.0, (T, 6)).astype(np.int32),
        "position": rng.random(T),
        "speed": rng.random((T, 2)).astype(np.float32),
        "trial": np.repeat(np.arange(4), T // 4).astype(np.float64),  # trial ids saved as floats
        "direction": (np.arange(T) // 7 % 2).astype(np.int8),
    }


def test_npz_with_trials_gives_only_the_named_labels(tmp_path, arrays):
    np.savez(tmp_path / "rat.npz", **arrays)
    plain = load_timeseries(tmp_path / "rat.npz", neural="spikes")
    assert plain.continuous is None and plain.discrete is None and plain.segments is None
    assert torch.equal(plain.neural, torch.from_numpy(arrays["spikes"]).float())
    recording = load_timeseries(
        tmp_path / "rat.npz", neural="spikes", continuous=["position", "speed"], discrete="direction", segments="trial"
    )
    assert recording.name == "rat" and recording.continuous.shape == (T, 3)
    assert torch.allclose(recording.continuous[:, 0], torch.from_numpy(arrays["position"]).float())
    assert torch.equal(recording.continuous[:, 1:], torch.from_numpy(arrays["speed"]))
    assert recording.discrete.tolist() == arrays["direction"].tolist()
    assert recording.num_segments == 4 and recording.segments.dtype == torch.long
    as_labels = load_timeseries(tmp_path / "rat.npz", neural="spikes", discrete="trial")  # whole floats: accepted
    assert as_labels.discrete.tolist() == arrays["trial"].astype(int).tolist()


def test_fractional_discrete_labels_and_unknown_keys_are_errors_naming_file_and_key(tmp_path, arrays):
    path = tmp_path / "rat.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"rat.npz:position must hold integers.*row 0.*continuous="):
        load_timeseries(path, neural="spikes", discrete="position")
    with pytest.raises(ValueError, match=r"rat.npz has no array 'pos'; it holds \['spikes'"):
        load_timeseries(path, neural="spikes", continuous="pos")
    with pytest.raises(ValueError, match="pass neural=<key>"):
        load_timeseries(path)
    with pytest.raises(IsADirectoryError, match="is a directory; load_timeseries expects a file"):
        load_timeseries(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere.npz does not exist"):
        load_timeseries(tmp_path / "nowhere.npz")
    np.save(tmp_path / "only.npy", arrays["spikes"])
    assert load_timeseries(tmp_path / "only.npy").num_channels == 6
    with pytest.raises(ValueError, match="only.npy is a .npy file holding one array"):
        load_timeseries(tmp_path / "only.npy", continuous="position")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="garbage.npz is not .npy / .npz numeric data: damaged"):
        load_timeseries(tmp_path / "garbage.npz", neural="spikes")


def test_csv_columns_by_name_and_a_bad_cell_named_by_line(tmp_path):
    lines = ["n1,n2,x,trial"] + [f"{t % 3},{t % 5},{t / 10},{'ab'[t // 6]}" for t in range(12)]
    (tmp_path / "rec.csv").write_text("\n".join(lines) + "\n")
    recording = load_timeseries(tmp_path / "rec.csv", continuous="x", segments="trial")
    assert recording.num_channels == 2 and recording.num_segments == 2  # neural = the columns not named
    assert recording.segments.tolist() == [0] * 6 + [1] * 6
    (tmp_path / "rec.tsv").write_text("a\tb\n1\t2\n3\tz\n")
    with pytest.raises(ValueError, match=r"rec.tsv line 3 column 'b': 'z' is not a number"):
        load_timeseries(tmp_path / "rec.tsv")


def test_hdf5_with_the_users_names_in_memory_and_on_disk(tmp_path, arrays):
    path = tmp_path / "mouse.h5"
    with h5py.File(path, "w") as file:
        file["ephys/spikes"] = arrays["spikes"]
        file["behaviour/position"] = arrays["position"]
        file["trial"] = arrays["trial"]
    for in_memory in (True, False):
        recording = load_timeseries(
            path, neural="ephys/spikes", continuous="behaviour/position", segments="trial", in_memory=in_memory
        )
        assert recording.in_memory == in_memory and recording.num_segments == 4
        assert torch.equal(recording.read_neural(0, T), torch.from_numpy(arrays["spikes"]).float())
    with pytest.raises(ValueError, match=r"mouse.h5:ephys must be a dataset, found a group; the file holds"):
        load_timeseries(path, neural="ephys")


def test_library_layout_takes_label_selection(tmp_path, arrays):
    path = tmp_path / "lib.h5"
    save_recordings(path, Recording(arrays["spikes"], arrays["position"], arrays["direction"], name="rat1"))
    both = load_timeseries(path, continuous="continuous", discrete="discrete")
    assert both.name == "rat1" and both.num_continuous == 1 and both.discrete is not None
    position_only = load_timeseries(path, continuous="continuous")
    assert position_only.discrete is None and position_only.num_continuous == 1
    with pytest.raises(ValueError, match="library's recordings layout.*continuous='position' must be 'continuous'"):
        load_timeseries(path, continuous="position")


def test_estimator_fits_a_loaded_recording_on_the_chosen_labels_only(tmp_path, arrays):
    from contrastive_seq.estimator import ContrastiveEmbedding

    np.savez(tmp_path / "rat.npz", **arrays)
    recording = load_timeseries(tmp_path / "rat.npz", neural="spikes", continuous="position")
    model = ContrastiveEmbedding(model_architecture="offset1-mlp", max_iterations=3, batch_size=16, verbose=False)
    model.fit(recording)
    assert model.label_kind_ == "continuous"
    assert model.transform(recording).shape == (T, model.output_dimension)
