"""Vision data: Fashion-MNIST's IDX files, image folders and HDF5 images, with errors that name the file."""

import gzip

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from contrastive_seq.data.fashion_mnist import DEFAULT_ROOT, load_fashion_mnist, read_idx
from contrastive_seq.data.hdf5_images import load_hdf5_images, save_hdf5_images
from contrastive_seq.data.image_folder import load_image_folder


def write_idx(path, array, magic):
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_root(tmp_path):
    """A miniature Fashion-MNIST in the package's file layout: 6 training and 4 test images."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return tmp_path


def test_fashion_mnist_reads_idx_images_and_labels(fashion_root):
    train = load_fashion_mnist("train", fashion_root)
    raw = read_idx(fashion_root / "train-images-idx3-ubyte.gz", 2051, dims=3)
    assert train.inputs.shape == (6, 1, 28, 28) and train.inputs.dtype == torch.float32
    assert torch.equal(train.inputs[:, 0], torch.from_numpy(raw.astype(np.float32) / 255))
    assert torch.equal(train.labels, torch.arange(6))
    assert len(load_fashion_mnist("test", fashion_root)) == 4


def test_missing_fashion_mnist_names_the_file_and_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation", tmp_path)


def test_corrupt_idx_files_are_named(fashion_root):
    path = fashion_root / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((2, 28, 28)), 2049)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz has IDX magic number 2049, expected 2051"):
        load_fashion_mnist("train", fashion_root)
    with gzip.open(path, "wb") as file:
        file.write(np.array([2051, 3, 28, 28], dtype=">i4").tobytes() + bytes(100))
    with pytest.raises(ValueError, match="announces shape"):
        load_fashion_mnist("train", fashion_root)
    write_idx(path, np.zeros((5, 28, 28)), 2051)  # 5 images, 6 labels
    with pytest.raises(ValueError, match="6 labels for the 5 images"):
        load_fashion_mnist("train", fashion_root)


@pytest.mark.skipif(not (DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed")
def test_the_debian_package_holds_the_official_test_split():
    test = load_fashion_mnist("test")
    assert test.inputs.shape == (10_000, 1, 28, 28)
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    assert 0 <= float(test.inputs.min()) and float(test.inputs.max()) <= 1


def test_image_folder_loads_classes_in_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    for cls, count in (("cat", 2), ("ant", 3)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    data, classes = load_image_folder(tmp_path, image_size=8, channels=3)
    assert classes == ["ant", "cat"]
    assert data.inputs.shape == (5, 3, 8, 8) and torch.equal(data.labels, torch.tensor([0, 0, 0, 1, 1]))
    assert 0 <= float(data.inputs.min()) and float(data.inputs.max()) <= 1
    grey, _ = load_image_folder(tmp_path, image_size=6, channels=1)
    assert grey.inputs.shape == (5, 1, 6, 6)


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere", 8)
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_image_folder(tmp_path, 8)  # no class folders
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_image_folder(tmp_path, 8)  # no images
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, 8, channels=4)


def test_hdf5_images_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 1, 5, 5), dtype=np.uint8)
    save_hdf5_images(tmp_path / "a.h5", images, np.arange(7) % 3)
    data = load_hdf5_images(tmp_path / "a.h5")
    assert torch.equal(data.inputs, torch.from_numpy(images).float() / 255)
    assert torch.equal(data.labels, torch.arange(7) % 3)
    floats = np.random.default_rng(1).random((3, 3, 4, 4)).astype(np.float32)
    save_hdf5_images(tmp_path / "b.h5", floats)
    unlabelled = load_hdf5_images(tmp_path / "b.h5")
    assert unlabelled.labels is None and torch.equal(unlabelled.inputs, torch.from_numpy(floats))


def test_hdf5_errors_name_the_file_and_dataset(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(FileNotFoundError, match="bad.h5"):
        load_hdf5_images(path)
    with h5py.File(path, "w") as file:
        file["pictures"] = np.zeros((2, 1, 3, 3), np.uint8)
        file["flat"] = np.zeros((2, 9), np.uint8)
        file["bright"] = np.full((2, 1, 3, 3), 2.0)
        file["labels"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"bad.h5 has no dataset 'images'"):
        load_hdf5_images(path)
    with pytest.raises(ValueError, match=r"bad.h5:flat must have shape \(n, channels, height, width\)"):
        load_hdf5_images(path, images_key="flat")
    with pytest.raises(ValueError, match=r"bad.h5:bright .* \[0, 1\]"):
        load_hdf5_images(path, images_key="bright")
    with pytest.raises(ValueError, match=r"bad.h5:labels must hold integer labels"):
        load_hdf5_images(path, images_key="pictures")
    assert load_hdf5_images(path, images_key="pictures", labels_key=None).labels is None
    with pytest.raises(ValueError, match="images must have shape"):
        save_hdf5_images(tmp_path / "c.h5", np.zeros((2, 3, 3)))
