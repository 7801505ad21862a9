"""load_images: a PNG folder, labelled by class folders or plain, decoded on access, corrupt files named or skipped."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive_seq.data.image_folder import ImageFiles, load_image_folder, load_images
from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.views.base import TransformedViews


@pytest.fixture
def pngs(tmp_path):
    """``root/ant`` (3 PNGs, one in a sub-folder) and ``root/cat`` (2 PNGs), random pixels of several sizes."""
    root = tmp_path / "pngs"
    rng = np.random.default_rng(0)
    for cls, names in (("cat", ["0.png", "1.png"]), ("ant", ["0.png", "1.png", "more/2.png"])):
        for i, name in enumerate(names):
            target = root / cls / name
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(target)
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


def test_class_folders_decode_on_access_to_what_the_in_memory_loader_holds(pngs):
    files = load_images(pngs, image_size=8)
    assert isinstance(files, ImageFiles) and files.classes == ["ant", "cat"]
    assert files.labels.tolist() == [0, 0, 0, 1, 1]
    in_memory, classes = load_image_folder(pngs, image_size=8)
    assert classes == files.classes and torch.equal(in_memory.labels, files.labels)
    index = torch.tensor([[4, 0], [0, 2]])
    assert files[index].shape == (2, 2, 3, 8, 8)
    assert torch.equal(files[index], in_memory[index])
    grey = load_images(pngs, image_size=6, channels=1)
    assert grey[torch.tensor([1])].shape == (1, 1, 6, 6)


def test_plain_folder_is_unlabelled_and_recursive(pngs):
    files = load_images(pngs, image_size=4, labels=None)
    assert files.labels is None and files.classes is None and len(files) == 5
    assert [p.name for p in files.paths] == ["0.png", "1.png", "2.png", "0.png", "1.png"]


def test_views_decode_in_the_batch_and_a_split_keeps_labels(pngs):
    files = load_images(pngs, image_size=8)
    pairs = AugmentationSampler(len(files), n_views=2).sample(4, torch.Generator().manual_seed(0))
    batch = TransformedViews(lambda image: image.flip(-1))(files, pairs, torch.Generator().manual_seed(0))
    assert batch["views"].shape == (2, 4, 3, 8, 8) and batch["labels"].shape == (4,)
    train, test = files.split(0.4, seed=0)
    assert len(train) == 3 and len(test) == 2
    assert sorted(train.labels.tolist() + test.labels.tolist()) == [0, 0, 0, 1, 1]


def test_a_corrupt_file_is_named_or_skipped_with_a_count(pngs):
    damaged = pngs / "cat" / "2.png"
    damaged.write_bytes((pngs / "cat" / "0.png").read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match=r"1 of 6 image files .* cannot be read \(first: .*cat/2.png"):
        load_images(pngs, image_size=8)
    with pytest.warns(UserWarning, match=r"1 of 6 image files .*cat/2.png.*skipped"):
        files = load_images(pngs, image_size=8, on_corrupt="skip")
    assert len(files) == 5 and files.labels.tolist() == [0, 0, 0, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"image file .*cat/2.png cannot be decoded"):
            ImageFiles([damaged], 8)[torch.tensor([0])]


def test_folder_errors(pngs, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_images(tmp_path / "nowhere", 8)
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_images(pngs / "cat" / "0.png", 8)
    with pytest.raises(ValueError, match="channels"):
        load_images(pngs, 8, channels=4)
    with pytest.raises(ValueError, match="on_corrupt must be one of"):
        load_images(pngs, 8, on_corrupt="ignore")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image file"):
        load_images(tmp_path / "empty", 8, labels=None)
