"""A trained run embeds and exports with its folder alone (config + checkpoint): the training data may be gone."""

import numpy as np
import pytest
from test_own_data import CONFIGS, QUIET, write_recording

from contrastive_seq.cli import main
from contrastive_seq.experiments.run import ENCODER_RECORD
from contrastive_seq.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def recording_run(tmp_path):
    """A 3-step CEBRA run on ``rec.npz`` (10 trials of 12 neurons) and a new recording ``new.npz`` to embed."""
    write_recording(tmp_path / "rec.npz", trials=10, seed=0)
    write_recording(tmp_path / "new.npz", trials=3, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.path={tmp_path / 'rec.npz'}", "train.max_steps=3", "train.batch_size=32", *QUIET,
                 "encoder.hidden_dim=8", f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "cebra_recording.yaml"), *overrides]) == 0
    return run


def embed(*args: str) -> int:
    return main(["embed", *map(str, args), "--no-progress"])


def test_embed_and_export_after_the_training_data_is_deleted(recording_run, tmp_path, capsys):
    run, new = recording_run, tmp_path / "new.npz"
    assert embed(run, new, "-o", tmp_path / "before.npy") == 0
    (tmp_path / "rec.npz").unlink()  # the training recording is gone (or the run folder moved to another machine)
    assert embed(run, new, "-o", tmp_path / "after.npy") == 0
    assert main(["export", str(run), "-o", str(tmp_path / "encoder.pt")]) == 0
    assert embed(tmp_path / "encoder.pt", new, "-o", tmp_path / "exported.npy") == 0
    before = np.load(tmp_path / "before.npy")
    assert before.shape == (300, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "after.npy"), before)
    np.testing.assert_array_equal(np.load(tmp_path / "exported.npy"), before)
    capsys.readouterr()
    assert embed(run, "train", "-o", tmp_path / "train.npy") == 2  # only 'train' / 'test' read the training data
    assert "rec.npz" in capsys.readouterr().err
    assert embed(run, new, "-o", tmp_path / "z.npy", "--features", "context") == 2
    assert "features='context': the encoder of method 'cebra' offers ['encoder']" in capsys.readouterr().err
    assert embed(run, new, "-o", tmp_path / "z.h5", "--frames") == 2
    assert "encoder 'offset' gives one row per sample: per-file frames apply to audio" in capsys.readouterr().err


def test_an_older_run_without_the_record_says_what_is_missing(recording_run, tmp_path, capsys):
    """A checkpoint written before the encoder record existed still embeds while its data exists, else says why not."""
    run, new = recording_run, tmp_path / "new.npz"
    state = load_checkpoint(run / "checkpoint.pt")
    del state["run_settings"][ENCODER_RECORD]
    save_checkpoint(run / "checkpoint.pt", state)
    assert embed(run, new, "-o", tmp_path / "old.npy") == 0  # rebuilt from its data section
    (tmp_path / "rec.npz").unlink()
    capsys.readouterr()
    assert embed(run, new, "-o", tmp_path / "z.npy") == 2
    error = capsys.readouterr().err
    assert f"run_settings.{ENCODER_RECORD}.sample_shape" in error and "rec.npz" in error
