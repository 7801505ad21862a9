"""Damaged checkpoints are detected, never trained on; nothing the user had is lost; resume policies.

The training job is the tiny seeded autoencoder of ``fault_tolerance_job.py``
(12 steps, a checkpoint every 4), run in this process.
"""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.config import ConfigError, from_mapping
from contrastive_seq.training import CheckpointError, TrainerConfig, load_checkpoint, save_checkpoint
from contrastive_seq.training import checkpoint as checkpoint_module

JOB = Path(__file__).with_name("fault_tolerance_job.py")
_spec = importlib.util.spec_from_file_location("fault_tolerance_job", JOB)
job = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(job)


def trained(output_dir: Path, **config: object):
    trainer = job.make_trainer(output_dir, **config)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """``straight(max_steps)``: final weights of an uninterrupted run of that length."""
    runs: dict[int, dict[str, torch.Tensor]] = {}

    def weights(max_steps: int) -> dict[str, torch.Tensor]:
        if max_steps not in runs:
            runs[max_steps] = trained(tmp_path_factory.mktemp("straight"), max_steps=max_steps).method.state_dict()
        return runs[max_steps]

    return weights


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def section_offsets(path: Path, state: dict) -> dict[str, int]:
    """Byte offsets inside each part of a checkpoint file: zip headers, pickled metadata, tensors, checksum."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        pickle_record = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
        directory_start = data.rindex(b"PK\x01\x02")  # the last central-directory entry
    model_tensor = state["model"]["encoder.weight"].numpy().tobytes()
    optimiser_tensor = state["optimizer"]["state"][0]["exp_avg"].numpy().tobytes()
    offsets = {
        "zip local header": 10,
        "pickled metadata": pickle_record.header_offset + 30 + len(pickle_record.filename) + 20,
        "model tensor": data.index(model_tensor) + len(model_tensor) // 2,
        "optimiser state tensor": data.index(optimiser_tensor) + 3,
        "central directory": directory_start + 16,
        "checksum": len(data) - 5,
    }
    assert len(set(offsets.values())) == len(offsets)
    return offsets


def flip(path: Path, offset: int, count: int = 1) -> None:
    data = bytearray(path.read_bytes())
    for position in range(offset, offset + count):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


SECTIONS = ["zip local header", "pickled metadata", "model tensor", "optimiser state tensor", "central directory", "checksum"]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_flipped_byte_in_any_part_of_a_checkpoint_is_refused_naming_the_file(tmp_path, section):
    """Every loader (load_checkpoint, resume, the estimator's load) refuses it; without the checksum tensor damage loads silently."""
    path = tmp_path / "checkpoint.pt"
    trainer = trained(tmp_path, max_steps=4)
    state = load_checkpoint(path)
    offset = section_offsets(path, state)[section]
    flip(path, offset)
    (tmp_path / "checkpoint.previous.pt").unlink(missing_ok=True)
    if section in ("model tensor", "optimiser state tensor"):  # what the checksum is for: torch itself does not notice
        assert torch.load(path, weights_only=True)["step"] == 4
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        job.make_trainer(tmp_path, max_steps=8).fit()
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        ContrastiveEmbedding.load(path)
    assert trainer.step == 4


def test_sixty_four_flipped_bytes_in_optimiser_state_are_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"optimizer": {"exp_avg": torch.arange(256, dtype=torch.float32)}}
    save_checkpoint(path, state)
    flip(path, path.read_bytes().index(state["optimizer"]["exp_avg"].numpy().tobytes()) + 100, count=64)
    with pytest.raises(CheckpointError, match=f"{re.escape(str(path))} is damaged"):
        load_checkpoint(path)


def test_a_file_without_checksum_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"step": 1}, path)
    with pytest.raises(CheckpointError, match="carries no checksum"):
        load_checkpoint(path)
    save_checkpoint(path, {"step": 1})
    path.write_bytes(path.read_bytes()[:-1])  # truncated by one byte
    with pytest.raises(CheckpointError, match="carries no checksum"):
        load_checkpoint(path)


def test_resume_falls_back_to_the_previous_checkpoint_and_ends_bitwise_equal(tmp_path, straight):
    """The step-8 checkpoint of an 8-step run is damaged: a rerun warns, resumes from step 4 and ends as the uninterrupted run."""
    trained(tmp_path, max_steps=8)
    newest, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.previous.pt"
    assert load_checkpoint(newest)["step"] == 8 and load_checkpoint(previous)["step"] == 4
    flip(newest, newest.stat().st_size // 2, count=64)
    resumed = job.make_trainer(tmp_path, max_steps=8)
    with pytest.warns(RuntimeWarning, match=f"{re.escape(str(newest))} is damaged.*previous checkpoint") as record:
        resumed.fit()
    assert record[0].filename == __file__  # the line that called fit, not the Trainer's inside
    assert resumed.method.steps_seen == list(range(4, 8))
    assert_same_weights(straight(8), resumed.method.state_dict())
    assert load_checkpoint(newest)["step"] == 8
    assert load_checkpoint(previous)["step"] == 4  # the damaged file was replaced, never kept as "previous"


def test_both_checkpoints_damaged_is_an_error_and_nothing_is_written(tmp_path):
    trained(tmp_path, max_steps=8)
    for name in ("checkpoint.pt", "checkpoint.previous.pt"):
        flip(tmp_path / name, 200)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    with pytest.raises(CheckpointError, match="previous checkpoint cannot be used either"):
        job.make_trainer(tmp_path).fit()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before


def test_a_save_interrupted_between_its_two_renames_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch, straight):
    real_replace, calls = checkpoint_module.os.replace, []

    def replace(source, target):  # the rotation (checkpoint.pt -> previous) works, the new file's rename fails
        calls.append(Path(target).name)
        if Path(target).name == "checkpoint.pt" and "checkpoint.previous.pt" in calls:
            raise OSError(5, "Input/output error")
        return real_replace(source, target)

    trainer = job.make_trainer(tmp_path)
    monkeypatch.setattr("contrastive_seq.atomic_files.os.replace", replace)
    with pytest.raises(OSError, match="checkpoint.pt"):
        trainer.fit()
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint.pt").exists() and load_checkpoint(tmp_path / "checkpoint.previous.pt")["step"] == 4
    resumed = job.make_trainer(tmp_path)
    with pytest.warns(RuntimeWarning, match="a save was interrupted") as record:
        resumed.fit()
    assert record[0].filename == __file__
    assert_same_weights(straight(12), resumed.method.state_dict())


def test_a_checkpoint_path_that_is_a_directory_fails_before_anything_is_written(tmp_path):
    trained(tmp_path, max_steps=4)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "checkpoint.pt").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path / "checkpoint.pt"))):
        job.make_trainer(tmp_path)
    (tmp_path / "checkpoint.pt").rmdir()
    (tmp_path / "metrics.jsonl").rename(tmp_path / "kept.jsonl")
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path / "metrics.jsonl"))):
        job.make_trainer(tmp_path)
    assert (tmp_path / "kept.jsonl").read_bytes() == metrics


def test_an_output_dir_that_is_a_file_is_a_one_line_config_error(tmp_path):
    file = tmp_path / "taken"
    file.write_text("the user's file")
    for value, expected in ((str(file), "a directory .* not a file"), (123, "must be str or PathLike")):
        with pytest.raises(ConfigError, match=f"train.output_dir.*{expected}") as raised:
            from_mapping(TrainerConfig, {"output_dir": value}, "train")
        assert "\n" not in str(raised.value)
    with pytest.raises(NotADirectoryError, match=re.escape(str(file))):
        job.make_trainer(file / "below")
    assert file.read_text() == "the user's file"


def records(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_metrics_are_rotated_never_truncated(tmp_path):
    """A resumed run keeps the records up to its checkpoint; the full old file is kept as metrics.jsonl.1."""
    trained(tmp_path, max_steps=4)
    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("a") as file:  # records of steps 5 and 6, logged after the step-4 checkpoint by a run that died
        file.write('{"step": 5, "loss": 1.0}\n{"step": 6, "loss": 1.0}\n')
    old = metrics.read_bytes()
    trained(tmp_path, max_steps=8)
    assert (tmp_path / "metrics.jsonl.1").read_bytes() == old
    assert records(metrics) == list(range(1, 9))
    trained(tmp_path, max_steps=12)  # nothing after the checkpoint: appended in place
    assert records(metrics) == list(range(1, 13)) and not (tmp_path / "metrics.jsonl.2").exists()
    kept = metrics.read_bytes()
    trained(tmp_path, max_steps=4, resume="never")  # a new run rotates the old records away
    assert (tmp_path / "metrics.jsonl.2").read_bytes() == kept and records(metrics) == list(range(1, 5))


def test_resume_policies_and_what_a_rerun_prints(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="resume='must'.*checkpoint.pt"):
        job.make_trainer(tmp_path, resume="must").fit()
    assert not (tmp_path / "metrics.jsonl").exists()
    trained(tmp_path, max_steps=4)
    capsys.readouterr()
    resumed = trained(tmp_path, max_steps=8, resume="must")
    assert f"resuming from {tmp_path / 'checkpoint.pt'} at step 4 of 8" in capsys.readouterr().out
    assert resumed.method.steps_seen == list(range(4, 8))
    finished = trained(tmp_path, max_steps=8)
    out = capsys.readouterr().out
    assert "the run is finished" in out and str(tmp_path) in out
    assert finished.method.steps_seen == [] and finished.history == []
    fresh = trained(tmp_path, max_steps=4, resume="never")
    assert fresh.method.steps_seen == list(range(4))
    assert load_checkpoint(tmp_path / "checkpoint.previous.pt")["step"] == 8  # the old run's last checkpoint is kept
    np.testing.assert_equal(load_checkpoint(tmp_path / "checkpoint.pt")["step"], 4)
