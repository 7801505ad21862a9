"""Every file the package writes is replaced whole or not at all: checkpoints, every HDF5 writer, results."""

import errno
import os
import stat

import h5py
import pytest
import torch

from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.data.audio import load_speech_corpus, save_speech_corpus
from contrastive_seq.data.hdf5 import load_recordings, save_recordings, write_hdf5_atomically
from contrastive_seq.data.hdf5_images import load_hdf5_images, save_hdf5_images
from contrastive_seq.data.image_text import ImageTextDataset, load_image_text_hdf5, save_image_text_hdf5
from contrastive_seq.data.recording import Recording


def test_a_failed_write_leaves_the_previous_content_and_no_temporary_file(tmp_path):
    path = tmp_path / "report.json"
    write_atomically(path, lambda file: file.write(b"first"))

    def half_then_fail(file):
        file.write(b"sec")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["report.json"]
    (tmp_path / ".report.json.killed.tmp").write_bytes(b"left by a writer killed mid-write")
    assert write_atomically(path, lambda file: file.write(b"second")) == path
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == ["report.json"]


def test_a_failing_hdf5_fill_keeps_the_previous_file_readable(tmp_path):
    path = tmp_path / "data.h5"
    write_hdf5_atomically(path, lambda file: file.create_dataset("x", data=[1, 2, 3]))

    def fill_then_fail(file):
        file.create_dataset("x", data=[7, 7, 7, 7])
        raise ValueError("bad data found half way")

    with pytest.raises(ValueError, match="half way"):
        write_hdf5_atomically(path, fill_then_fail)
    with h5py.File(path) as file:
        assert file["x"][:].tolist() == [1, 2, 3]
    assert os.listdir(tmp_path) == ["data.h5"]


WRITERS = {
    "recordings": (
        lambda path, value: save_recordings(path, Recording(torch.full((5, 2), float(value)))),
        lambda path: float(load_recordings(path)[0].neural[0, 0]),
    ),
    "images": (
        lambda path, value: save_hdf5_images(path, torch.full((2, 1, 3, 3), value, dtype=torch.uint8)),
        lambda path: float(load_hdf5_images(path).inputs[0, 0, 0, 0] * 255),
    ),
    "image_text": (
        lambda path, value: save_image_text_hdf5(
            path, ImageTextDataset(torch.full((2, 3, 2, 2), value, dtype=torch.uint8), ["a", "b"])
        ),
        lambda path: float(load_image_text_hdf5(path).images[0, 0, 0, 0]),
    ),
    "speech": (
        lambda path, value: save_speech_corpus(
            path, [torch.full((800,), value / 100)], [0], ["u0"], 16000, ["speaker"]
        ),
        lambda path: round(float(load_speech_corpus(path).audio.sequence(0)[0, 0]) * 100),
    ),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_hdf5_writer_keeps_the_previous_file_when_the_rename_fails(tmp_path, monkeypatch, writer):
    save, read = WRITERS[writer]
    path = tmp_path / "file.h5"
    save(path, 3)
    assert read(path) == 3

    def disk_error(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", disk_error)
    with pytest.raises(OSError, match="Input/output error"):
        save(path, 9)
    monkeypatch.undo()
    assert read(path) == 3  # a writer that wrote in place would have left 9, or half a file
    assert os.listdir(tmp_path) == ["file.h5"]
    save(path, 9)
    assert read(path) == 9


def test_a_new_file_gets_the_permissions_open_gives_and_a_replaced_one_keeps_its_own(tmp_path):
    """Not the 0o600 of a bare temporary file: a run folder or a shard cache shared by a group stays readable."""
    previous = os.umask(0o027)
    try:
        write_atomically(tmp_path / "new.bin", lambda file: file.write(b"x"))
        with open(tmp_path / "plain.bin", "wb") as file:
            file.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640
    (tmp_path / "new.bin").chmod(0o604)
    write_atomically(tmp_path / "new.bin", lambda file: file.write(b"y"))
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o604 and (tmp_path / "new.bin").read_bytes() == b"y"
