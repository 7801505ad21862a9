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

from contrastive_seq.data.hdf5 import load_recording, save_recordings
from contrastive_seq.data.hdf5_images import load_hdf5_images, save_hdf5_images
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
