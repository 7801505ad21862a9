"""NWB files written with pynwb: units binned, a fluorescence series, behaviour interpolated, trials as segments."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb.behavior import Position, SpatialSeries  # noqa: E402
from pynwb.ophys import Fluorescence, RoiResponseSeries  # noqa: E402

from contrastive_seq.data.nwb import load_nwb, read_nwb  # noqa: E402

SPIKES = [np.array([0.05, 0.12, 0.13, 0.95]), np.array([0.5, 0.51]), np.array([1.93])]


@pytest.fixture(scope="module")
def nwb_path(tmp_path_factory):
    """Three units, 20 Hz position ramping 0 -> 1.9 over 0..1.9 s, 10 Hz two-ROI fluorescence, three trials."""
    nwbfile = pynwb.NWBFile(
        session_description="test", identifier="session-1", session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc)
    )
    nwbfile.session_id = "session-1"
    for train in SPIKES:
        nwbfile.add_unit(spike_times=train)
    times = np.arange(0, 2.0, 0.05)
    position = SpatialSeries(
        name="position", data=np.stack([times, 2 * times], 1), reference_frame="track", timestamps=times
    )
    nwbfile.create_processing_module(name="behavior", description="behaviour").add(Position(spatial_series=position))
    ophys = nwbfile.create_processing_module(name="ophys", description="optical physiology")
    device = nwbfile.create_device(name="microscope")
    plane = _imaging_plane(nwbfile, device)
    table = _plane_segmentation(ophys, plane)
    rois = table.create_roi_table_region(description="both", region=[0, 1])
    dff = np.arange(40, dtype=float).reshape(20, 2)
    series = RoiResponseSeries(
        name="RoiResponseSeries", data=dff, rois=rois, unit="n.a.", rate=10.0
    )
    ophys.add(Fluorescence(roi_response_series=series))
    nwbfile.add_trial_column(name="kind", description="trial kind")
    for begin, end, kind in [(0.0, 0.6, "left"), (0.6, 1.2, "right"), (1.4, 2.0, "left")]:
        nwbfile.add_trial(start_time=begin, stop_time=end, kind=kind)
    path = tmp_path_factory.mktemp("nwb") / "session.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _imaging_plane(nwbfile, device):
    from pynwb.ophys import OpticalChannel

    channel = OpticalChannel(name="green", description="green", emission_lambda=520.0)
    return nwbfile.create_imaging_plane(
        name="plane", optical_channel=channel, description="plane", device=device,
        excitation_lambda=600.0, imaging_rate=10.0, indicator="GCaMP", location="CA1",
    )


def _plane_segmentation(ophys, plane):
    from pynwb.ophys import ImageSegmentation

    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    table = segmentation.create_plane_segmentation(description="rois", imaging_plane=plane, name="PlaneSegmentation")
    for roi in range(2):
        mask = np.zeros((4, 4))
        mask[roi, roi] = 1
        table.add_roi(image_mask=mask)
    return table


def test_units_binned_with_behaviour_and_trials(nwb_path):
    session = read_nwb(nwb_path, "units", behaviour="position", bin_width=0.1, discrete="kind")
    recording = session.recording
    # 19 bins from the first spike (0.05 s) to the last behaviour sample (1.95 s)
    edges = 0.05 + 0.1 * np.arange(20)
    expected = np.stack([np.histogram(train, edges)[0] for train in SPIKES], 1)
    np.testing.assert_array_equal(recording.neural.numpy(), expected)
    assert recording.neural.numpy().sum(0).tolist() == [4, 2, 1]
    centres = (edges[:-1] + edges[1:]) / 2
    np.testing.assert_allclose(session.bin_times, centres)
    np.testing.assert_allclose(recording.continuous.numpy(), np.stack([centres, 2 * centres], 1), atol=1e-6)
    trial = np.where(centres < 0.6, 0, np.where(centres < 1.2, 1, np.where(centres >= 1.4, 2, -1)))
    np.testing.assert_array_equal(session.trial, trial)
    np.testing.assert_array_equal(session.recording.segments.numpy(), trial)  # trials are the segments
    np.testing.assert_array_equal(recording.discrete.numpy(), np.where(trial == 1, 1, np.where(trial < 0, -1, 0)))
    assert recording.name == "session-1"


def test_fluorescence_series_keeps_its_sampling(nwb_path):
    recording = load_nwb(nwb_path, "Fluorescence/RoiResponseSeries", behaviour=["position"], start=0.35)
    np.testing.assert_array_equal(recording.neural.numpy(), np.arange(40, dtype=np.float32).reshape(20, 2)[4:])
    np.testing.assert_allclose(recording.continuous.numpy()[:, 0], np.arange(4, 20) * 0.1, atol=1e-6)
    assert recording.discrete is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"neural": "units"}, "bin_width must be a positive number"),
        ({"neural": "units", "bin_width": 0.1, "behaviour": "speed"}, "behaviour='speed' names no time series"),
        ({"neural": "calcium"}, "neural='calcium' names no time series"),
        ({"neural": "RoiResponseSeries", "bin_width": 0.1}, "bin_width applies to neural='units' only"),
        ({"neural": "units", "bin_width": 0.1, "discrete": "side"}, "discrete='side' is not a trials column"),
        ({"neural": "units", "bin_width": 0.1, "start": 5.0}, "no time left"),
        ({"neural": "units", "bin_width": 0.1, "argument_names": {"speed": "data.speed"}},
         r"argument_names: \['speed'\] are not arguments of read_nwb"),
    ],
)
def test_bad_arguments_are_named(nwb_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_nwb(nwb_path, **kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.continuous=[position, speed]"],
         r"data\.continuous='speed' names no time series of the file; it holds \['behavior/Position/position', "),
        (["data.neural=calcium", "data.bin_width=null"], r"data\.neural='calcium' names no time series of the file; it holds \["),
        (["data.discrete=side"], r"data\.discrete='side' is not a trials column; the columns are \["),
        (["data.start=5.0"], r"data\.neural: no time left between 5\.0 and .* s \(data\.start=5\.0, data\.stop=None\)"),
    ],
)
def test_a_config_names_its_own_key_for_what_the_file_lacks(nwb_path, tmp_path, capsys, overrides, message):
    """From a config, the reader's errors name the config key the user wrote (``data.continuous``, not ``behaviour``)."""
    from contrastive_seq.cli import main

    config = str(Path(__file__).resolve().parents[1] / "configs" / "own_data" / "cebra_nwb.yaml")
    assert main(["train", config, f"data.path={nwb_path}", *overrides, f"train.output_dir={tmp_path / 'run'}"]) == 2
    error = capsys.readouterr().err
    assert re.match(f"contrastive-seq: error: {message}", error), error
    assert "behaviour=" not in error and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        load_nwb(tmp_path / "absent.nwb", bin_width=0.1)


def write_place_cell_nwb(path, seconds: float, seed: int) -> None:
    """Twelve units with place fields on a 0..1 track run back and forth (2 s a lap), position at 50 Hz,
    trials of 4 s with a 'direction' column."""
    rng = np.random.default_rng(seed)
    nwbfile = pynwb.NWBFile(
        session_description="place cells", identifier=f"place-{seed}",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    times = np.arange(0, seconds, 0.02)
    position = np.abs((times / 2.0) % 2.0 - 1.0)  # one lap per 2 s
    for centre in np.linspace(0, 1, 12):
        rate = 40.0 * np.exp(-((position - centre) ** 2) / 0.01)  # Hz
        nwbfile.add_unit(spike_times=np.sort(times[rng.random(len(times)) < rate * 0.02]))
    series = SpatialSeries(name="position", data=position, reference_frame="track start", timestamps=times)
    nwbfile.create_processing_module(name="behavior", description="behaviour").add(Position(spatial_series=series))
    nwbfile.add_trial_column(name="direction", description="first lap's direction")
    for begin in np.arange(0, seconds, 4.0):
        nwbfile.add_trial(start_time=begin, stop_time=begin + 4.0, direction="out")
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def test_config_trains_embeds_and_decodes_an_nwb_file(tmp_path):
    """``configs/own_data/cebra_nwb.yaml`` on files written here: train, then embed another NWB file."""
    from contrastive_seq.cli import main

    write_place_cell_nwb(tmp_path / "session.nwb", 60.0, seed=0)
    write_place_cell_nwb(tmp_path / "new.nwb", 20.0, seed=1)
    run = tmp_path / "run"
    config = str(Path(__file__).resolve().parents[1] / "configs" / "own_data" / "cebra_nwb.yaml")
    overrides = [f"data.path={tmp_path / 'session.nwb'}", "train.max_steps=5", "train.batch_size=64",
                 "train.progress=false", "train.log_every=1", "train.checkpoint_every=1000", f"train.output_dir={run}"]
    assert main(["train", config, *overrides]) == 0
    results = json.loads((run / "results.json").read_text())
    assert "position" in json.dumps(results)  # the behaviour series was decoded by its name
    assert main(["embed", str(run), str(tmp_path / "new.nwb"), "-o", str(tmp_path / "z.npy"), "--no-progress"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (len(load_nwb(tmp_path / "new.nwb", "units", "position", 0.05)), 3)  # read as in training
    assert np.isfinite(z).all()
    assert main(["train", config, *overrides[1:], f"data.path={tmp_path / 'session.nwb'}", "data.bin_width=null"]) == 2
