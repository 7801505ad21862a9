"""Files from strangers never run code, and bad files get errors that name them.

A pickle whose ``__reduce__`` runs a shell command that creates a marker file
is offered to every load path (checkpoint loading, Trainer resume, the
estimator's ``load``); YAML with ``!!python`` tags to the config loader; HDF5
files with missing datasets, wrong shapes or wrong dtypes to the recordings
loader. The marker must never appear.
"""

from __future__ import annotations

import ast
import os
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.config import ConfigError, apply_overrides, load_yaml
from contrastive_seq.data import ArrayDataset
from contrastive_seq.data.audio import SPEECH_FORMAT, load_speech_corpus
from contrastive_seq.data.hdf5 import (
    HDF5TimeSeries,
    load_recording,
    load_recordings,
    save_recordings,
)
from contrastive_seq.data.hdf5_images import load_hdf5_images
from contrastive_seq.data.image_text import load_image_text_hdf5
from contrastive_seq.data.recording import Recording
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import (
    CheckpointError,
    Trainer,
    TrainerConfig,
    load_checkpoint,
    save_checkpoint,
)
from contrastive_seq.views import TransformedViews

PACKAGE = Path(__file__).resolve().parent.parent / "contrastive_seq"


class ShellCommand:
    """Unpickling this runs ``touch <marker>`` (what an attacker's file would do, harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_payload(path: Path, marker: Path, container: str) -> Path:
    """A file that runs the shell command when unpickled: a torch archive, a raw pickle or a checkpoint-like dict.

    The last comes with a valid checksum (``save_checkpoint``): a checksum detects damage, not intent, so
    weights-only loading must still refuse what it holds.
    """
    if container == "torch zip":
        torch.save(ShellCommand(marker), path)
    elif container == "raw pickle":
        path.write_bytes(pickle.dumps(ShellCommand(marker), protocol=2))
    else:  # a real-looking checkpoint with the payload tucked inside
        save_checkpoint(path, {"step": 1, "model": {"weight": torch.ones(1)}, "rng": [ShellCommand(marker)]})
    return path


CONTAINERS = ["torch zip", "raw pickle", "inside a checkpoint"]


@pytest.mark.parametrize("container", CONTAINERS)
def test_the_payload_really_runs_when_loaded_unsafely(tmp_path, container):
    """Guards the tests below against a payload that would do nothing anyway."""
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "evil.pt", marker, container)
    if container == "raw pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


class Identity(Method):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        return LossOutput((batch["views"].sum() * self.weight).square(), {})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def make_trainer(output_dir: Path | None = None) -> Trainer:
    return Trainer(
        Identity(),
        TrainerConfig(max_steps=2, batch_size=2, device="cpu", progress=False, output_dir=output_dir),
        ArrayDataset(torch.randn(8, 2)),
        AugmentationSampler(8),
        TransformedViews(),
    )


@pytest.mark.parametrize("container", CONTAINERS)
def test_every_checkpoint_load_path_refuses_code(tmp_path, container):
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "checkpoint.pt", marker, container)
    loaders = {
        "load_checkpoint": lambda: load_checkpoint(path),
        "Trainer.fit(resume=path)": lambda: make_trainer().fit(resume=path),
        "Trainer.fit() finding it in output_dir": lambda: make_trainer(tmp_path).fit(),
        "ContrastiveEmbedding.load": lambda: ContrastiveEmbedding.load(path),
    }
    for name, load in loaders.items():
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load()
        assert not marker.exists(), name


def test_a_genuine_estimator_file_still_loads(tmp_path):
    """The refusals above are not a loader that refuses everything."""
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    model = ContrastiveEmbedding(model_architecture="offset1-mlp", batch_size=16, max_iterations=2, device="cpu")
    model.fit(X).save(tmp_path / "model.pt")
    np.testing.assert_array_equal(ContrastiveEmbedding.load(tmp_path / "model.pt").transform(X), model.transform(X))
    save_checkpoint(tmp_path / "plain.pt", {"step": 1, "values": [1.5, "text", None, {"nested": torch.arange(3)}]})
    assert load_checkpoint(tmp_path / "plain.pt")["values"][3]["nested"].tolist() == [0, 1, 2]


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call in ``tree`` as (dotted name of the callee, call node)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.append((ast.unparse(node.func), node))
    return found


def test_no_module_loads_with_pickle_or_an_unsafe_yaml_loader():
    """A static guard: nothing unpickles; the only ``torch.load`` calls are weights-only, in checkpoint.py (the
    library's own checkpoints, checksum verified first) and models/pretrained.py (others' weight files)."""
    unsafe = {
        "pickle.load",
        "pickle.loads",
        "yaml.load",
        "yaml.unsafe_load",
        "yaml.full_load",
        "dill.load",
        "joblib.load",
    }
    torch_loads = []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for name, call in _calls(tree):
            where = f"{source.relative_to(PACKAGE.parent)}:{call.lineno}"
            assert name not in unsafe, f"{where} calls {name}"
            keywords = {keyword.arg: keyword.value for keyword in call.keywords}
            if "allow_pickle" in keywords:
                assert isinstance(keywords["allow_pickle"], ast.Constant) and not keywords["allow_pickle"].value, where
            if "trust_remote_code" in keywords:
                assert (
                    isinstance(keywords["trust_remote_code"], ast.Constant) and not keywords["trust_remote_code"].value
                ), where
            if name == "torch.load":
                weights_only = keywords.get("weights_only")
                assert isinstance(weights_only, ast.Constant) and weights_only.value is True, where
                torch_loads.append(where)
    assert [where.split(":")[0] for where in torch_loads] == [
        os.path.join("contrastive_seq", "models", "pretrained.py"),
        os.path.join("contrastive_seq", "training", "checkpoint.py"),
    ]


# ---------------------------------------------------------------- YAML


@pytest.mark.parametrize(
    "document",
    [
        "train: !!python/object/apply:os.system ['touch {marker}']\n",
        "train:\n  lr: !!python/object/new:os.system ['touch {marker}']\n",
        "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]\n",
    ],
)
def test_yaml_python_tags_are_refused(tmp_path, document):
    marker = tmp_path / "pwned"
    path = tmp_path / "config.yaml"
    path.write_text(document.format(marker=marker))
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_yaml(path)
    with pytest.raises(ConfigError, match="override .train.lr=!!python.*not valid"):
        apply_overrides({}, [f"train.lr=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


# ---------------------------------------------------------------- HDF5


def write_session(path: Path, members: dict[str, object]) -> Path:
    """A recordings file of one session ``a`` whose members are written as given (a dict value makes a group)."""
    with h5py.File(path, "w") as file:
        file.attrs["format"] = "contrastive_seq.recordings"
        file.attrs["format_version"] = 1
        sessions = file.create_group("sessions")
        sessions.attrs["order"] = ["a"]
        session = sessions.create_group("a")
        for name, value in members.items():
            if isinstance(value, dict):
                session.create_group(name)
            else:
                session.create_dataset(name, data=value)
    return path


NEURAL = np.ones((10, 3), np.float32)


@pytest.mark.parametrize(
    "members, error, dataset",
    [
        ({}, ValueError, "/sessions/a/neural"),  # missing
        ({"neural": {}}, ValueError, "/sessions/a/neural"),  # a group, not a dataset
        ({"neural": np.float32(1.0)}, ValueError, "/sessions/a/neural"),  # scalar
        ({"neural": np.ones((10, 3, 2), np.float32)}, ValueError, "/sessions/a/neural"),
        ({"neural": np.ones((0, 3), np.float32)}, ValueError, "/sessions/a/neural"),
        ({"neural": np.array([[b"x"] * 3] * 10)}, TypeError, "/sessions/a/neural"),  # bytes
        ({"neural": np.ones((10, 3), np.complex64)}, TypeError, "/sessions/a/neural"),
        ({"neural": np.zeros((10, 3), [("x", "f4"), ("y", "i4")])}, TypeError, "/sessions/a/neural"),  # compound
        (
            {"neural": NEURAL, "continuous": np.array([["a", "b"]] * 10, dtype="S1")},
            TypeError,
            "/sessions/a/continuous",
        ),
        ({"neural": NEURAL, "continuous": np.ones((10, 0))}, ValueError, "/sessions/a/continuous"),
        ({"neural": NEURAL, "continuous": {}}, ValueError, "/sessions/a/continuous"),
        ({"neural": NEURAL, "discrete": np.ones(11, np.int64)}, ValueError, "/sessions/a/discrete"),
        ({"neural": NEURAL, "discrete": np.ones(10, np.float16)}, TypeError, "/sessions/a/discrete"),
    ],
)
@pytest.mark.parametrize("in_memory", [True, False])
def test_bad_hdf5_datasets_are_named(tmp_path, members, error, dataset, in_memory):
    path = write_session(tmp_path / "rec.h5", members)
    with pytest.raises(error, match=re.escape(f"{path}:{dataset}")):
        load_recordings(path, in_memory=in_memory)
    with pytest.raises(error, match=re.escape(f"{path}:{dataset}")):
        load_recording(path, in_memory=in_memory)


@pytest.mark.parametrize("content", ["not hdf5", "truncated"])
def test_unreadable_hdf5_files_are_named(tmp_path, content):
    path = tmp_path / "rec.h5"
    if content == "not hdf5":
        path.write_bytes(b"\x80\x04this is a pickle, not HDF5" * 10)
    else:
        save_recordings(path, Recording(np.ones((1000, 8), np.float32)))
        path.write_bytes(path.read_bytes()[:1500])
    for load in (load_recordings, load_recording, lambda p: HDF5TimeSeries(p, "/sessions/session0/neural")):
        with pytest.raises(ValueError, match=re.escape(str(path)) + " is not a readable HDF5 file"):
            load(path)


def test_on_disk_series_names_a_missing_or_wrong_member(tmp_path):
    path = save_recordings(tmp_path / "rec.h5", Recording(NEURAL))
    with pytest.raises(ValueError, match=re.escape(f"{path}:/sessions/nope/neural must be a dataset, found nothing")):
        HDF5TimeSeries(path, "/sessions/nope/neural")
    with pytest.raises(ValueError, match=re.escape(f"{path}:/sessions must be a dataset, found a Group")):
        HDF5TimeSeries(path, "/sessions")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.h5"))):
        HDF5TimeSeries(tmp_path / "none.h5", "/x")


def test_other_hdf5_loaders_name_the_missing_dataset(tmp_path):
    path = tmp_path / "images.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("pictures", data=np.zeros((2, 1, 4, 4), np.uint8))
        file.create_dataset("flat", data=np.zeros((2, 16), np.uint8))
    with pytest.raises(ValueError, match=re.escape(f"{path} has no dataset 'images'")):
        load_hdf5_images(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}:flat must have shape")):
        load_hdf5_images(path, images_key="flat")
    with pytest.raises(ValueError, match=re.escape(f"{path} has no dataset 'images'")):
        load_image_text_hdf5(path)


def test_speech_corpus_names_missing_and_mistyped_datasets(tmp_path):
    path = tmp_path / "speech.h5"
    with h5py.File(path, "w") as file:
        file.attrs.update(format=SPEECH_FORMAT, sample_rate=16000, speaker_names=["a"], phone_names=["sil"])
        file["audio"] = np.zeros(10, np.float32)
        file["offsets"] = np.array([0, 10])
        file["utterance"] = np.array(["u0"], dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match=re.escape(f"{path} has no dataset 'speaker'")):
        load_speech_corpus(path)
    with h5py.File(path, "a") as file:
        file["speaker"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=re.escape(f"{path}:speaker must have a dtype of kind 'iu', got float32")):
        load_speech_corpus(path)
    with h5py.File(path, "a") as file:
        del file["speaker"]
        file["speaker"] = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=re.escape(f"{path} has no group 'phones'")):
        load_speech_corpus(path)
