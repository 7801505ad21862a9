"""HDF5 files the library writes carry per-chunk checksums; a damaged member is an error naming file and member.

Bytes are flipped inside a member's object header (8 and 20 bytes in: its
message table) and inside its data (the first chunk).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from contrastive_seq.data.audio import PhoneSegments, load_speech_corpus, save_speech_corpus
from contrastive_seq.data.hdf5 import load_recording, save_recordings
from contrastive_seq.data.hdf5_images import load_hdf5_images, save_hdf5_images
from contrastive_seq.data.image_text import ImageTextDataset, load_image_text_hdf5, save_image_text_hdf5
from contrastive_seq.data.recording import Recording


def every_dataset(path: Path) -> list[tuple[str, bool]]:
    """``(name, has a Fletcher-32 checksum)`` of every dataset in the file."""
    found = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found.append((name, item.fletcher32))

    with h5py.File(path) as file:
        file.visititems(visit)
    return found


def offsets(path: Path, key: str) -> dict[str, int]:
    with h5py.File(path) as file:
        dataset = file[key]
        header = h5py.h5o.get_info(dataset.id).addr
        return {"header": header + 8, "header message": header + 20, "data": dataset.id.get_chunk_info(0).byte_offset + 5}


def damaged_copy(path: Path, offset: int, target: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def recordings_file(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    recording = Recording(
        torch.randn(300, 3, generator=generator), torch.randn(300, 2, generator=generator), torch.arange(300) % 4, name="rat"
    )
    return save_recordings(tmp_path_factory.mktemp("hdf5") / "recordings.h5", recording)


def test_every_dataset_written_carries_a_checksum(tmp_path, recordings_file):
    images = tmp_path / "images.h5"
    save_hdf5_images(images, np.zeros((3, 1, 4, 4), np.uint8), np.arange(3))
    for path in (recordings_file, images):
        datasets = every_dataset(path)
        assert datasets and all(checked for _, checked in datasets), datasets


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("where", ["header", "header message", "data"])
@pytest.mark.parametrize("name", ["neural", "continuous", "discrete"])
def test_a_damaged_recording_member_is_named(tmp_path, recordings_file, name, where, in_memory):
    key = f"/sessions/rat/{name}"
    path = damaged_copy(recordings_file, offsets(recordings_file, key)[where], tmp_path / "damaged.h5")
    if in_memory or name != "neural" or where != "data":
        with pytest.raises(ValueError, match=re.escape(f"{path}:{key}") + ".*damaged"):
            load_recording(path, in_memory=in_memory)
    else:  # left on disk and not scanned: the damaged chunk is found at the first read of its rows
        recording = load_recording(path, in_memory=False, check_finite_values=False)
        with pytest.raises(ValueError, match=re.escape(f"{path}:{key}") + ".*damaged"):
            recording.neural.read_rows(np.arange(5))


@pytest.mark.parametrize("where", ["header", "data"])
@pytest.mark.parametrize("key", ["images", "labels"])
def test_damaged_images_or_labels_are_named(tmp_path, key, where):
    path = tmp_path / "images.h5"
    save_hdf5_images(path, np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8), np.arange(2))
    damaged = damaged_copy(path, offsets(path, key)[where], tmp_path / "damaged.h5")
    with pytest.raises(ValueError, match=re.escape(f"{damaged}") + f".*{key}.*damaged"):
        load_hdf5_images(damaged)


SPEECH_MEMBERS = ["audio", "offsets", "speaker", "utterance/bytes", "utterance/offsets"] + [
    f"phones/{field}" for field in ("offsets", "start", "end", "id")
]
IMAGE_TEXT_MEMBERS = ["images", "captions/bytes", "captions/offsets", "caption_image", "labels", "groups"]


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    waveforms = [torch.randn(400, generator=generator), torch.randn(300, generator=generator)]
    phones = [PhoneSegments(torch.tensor([0, 200]), torch.tensor([200, 400]), torch.tensor([1, 2]))] * 2
    path = tmp_path_factory.mktemp("speech") / "speech.h5"
    return save_speech_corpus(path, waveforms, [0, 1], ["utt-é0", "utt-ü1"], 16000, ["a", "b"], phones, ["sil", "aa", "iy"])


@pytest.fixture(scope="module")
def image_text_file(tmp_path_factory) -> Path:
    images = torch.arange(3 * 3 * 8 * 8, dtype=torch.uint8).reshape(3, 3, 8, 8)
    captions = ["a red square", "ein grünes Quadrat", "a blue square", "another red one"]
    caption_image, labels, groups = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1])
    dataset = ImageTextDataset(images, captions, caption_image, labels, ["r", "g", "b"], groups)
    path = tmp_path_factory.mktemp("image_text") / "pairs.h5"
    save_image_text_hdf5(path, dataset)
    return path


def test_speech_and_image_text_files_checksum_every_dataset_and_read_back(speech_file, image_text_file):
    for path, members in ((speech_file, SPEECH_MEMBERS), (image_text_file, IMAGE_TEXT_MEMBERS)):
        datasets = every_dataset(path)
        assert sorted(name for name, _ in datasets) == sorted(members)
        assert all(checked for _, checked in datasets), datasets
    corpus = load_speech_corpus(speech_file)
    assert [name.split(":")[-1] for name in corpus.audio.names] == ["utt-é0", "utt-ü1"]
    assert torch.equal(corpus.phones[1].end, torch.tensor([200, 400]))
    dataset = load_image_text_hdf5(image_text_file)
    assert dataset.captions[1] == "ein grünes Quadrat" and dataset.groups.tolist() == [0, 0, 1]


@pytest.mark.parametrize("where", ["header", "header message", "data"])
@pytest.mark.parametrize("key", SPEECH_MEMBERS)
def test_a_damaged_speech_corpus_member_is_named(tmp_path, speech_file, key, where):
    path = damaged_copy(speech_file, offsets(speech_file, key)[where], tmp_path / "damaged.h5")
    leaf = key.rsplit("/", 1)[-1]
    with pytest.raises(ValueError, match=re.escape(f"{path}") + f".*{leaf}.*damaged"):
        load_speech_corpus(path)


@pytest.mark.parametrize("where", ["header", "header message", "data"])
@pytest.mark.parametrize("key", IMAGE_TEXT_MEMBERS)
def test_a_damaged_image_text_member_is_named(tmp_path, image_text_file, key, where):
    path = damaged_copy(image_text_file, offsets(image_text_file, key)[where], tmp_path / "damaged.h5")
    leaf = key.rsplit("/", 1)[-1]
    with pytest.raises(ValueError, match=re.escape(f"{path}") + f".*{leaf}.*damaged"):
        load_image_text_hdf5(path)


def test_files_written_before_checksums_still_load(tmp_path):
    """The earlier layouts: string datasets for utterance ids and captions, no filters."""
    speech = tmp_path / "speech.h5"
    with h5py.File(speech, "w") as file:
        file.attrs.update(format="contrastive_seq.speech", format_version=1, sample_rate=16000)
        file.attrs.update(speaker_names=["a"], phone_names=["sil"])
        file["audio"] = np.zeros(10, np.float32)
        file["offsets"] = np.array([0, 10])
        file["speaker"] = np.zeros(1, np.int64)
        file["utterance"] = np.array(["u0"], dtype=h5py.string_dtype())
        for field in ("offsets", "start", "end", "id"):
            file[f"phones/{field}"] = np.array([0, 0]) if field == "offsets" else np.zeros(0, np.int64)
    assert load_speech_corpus(speech).audio.names == [f"{speech}:u0"]
    pairs = tmp_path / "pairs.h5"
    with h5py.File(pairs, "w") as file:
        file["images"] = np.zeros((2, 1, 4, 4), np.uint8)
        file.create_dataset("captions", data=["one", "zwei ü"], dtype=h5py.string_dtype("utf-8"))
    assert load_image_text_hdf5(pairs).captions == ["one", "zwei ü"]
