"""Image-caption datasets: CSV / JSON lines / HDF5 loading and every bad input refused up front."""

import json
import warnings

import pytest
import torch
from PIL import Image

from contrastive_seq.data.image_text import (
    ImageTextDataset,
    caption_classes,
    load_image_text_file,
    load_image_text_hdf5,
    save_image_text_hdf5,
)


@pytest.fixture
def image_folder(tmp_path):
    colours = {"red.png": (255, 0, 0, 255), "green.png": (0, 255, 0, 255), "clear.png": (0, 0, 255, 0)}
    for name, colour in colours.items():
        Image.new("RGBA", (10, 10), colour).save(tmp_path / name)
    return tmp_path


def write_csv(folder, rows):
    path = folder / "pairs.csv"
    path.write_text("image,caption,label\n" + "".join(f"{i},{c},{label}\n" for i, c, label in rows))
    return path


def test_csv_groups_captions_by_image_and_reads_pixels(image_folder):
    path = write_csv(
        image_folder,
        [("red.png", "a red square", "warm"), ("green.png", "a green square", "cold"), ("red.png", "red", "warm"),
         ("clear.png", "nothing", "cold")],
    )
    data = load_image_text_file(path, image_size=4)
    assert data.images.shape == (3, 3, 4, 4) and data.images.dtype == torch.uint8
    assert data.captions == ["a red square", "a green square", "red", "nothing"]
    assert data.caption_image.tolist() == [0, 1, 0, 2]
    assert data.class_names == ["cold", "warm"] and data.labels.tolist() == [1, 0, 0]
    assert data.images[0, :, 0, 0].tolist() == [255, 0, 0]
    assert data.images[2, :, 0, 0].tolist() == [255, 255, 255]  # transparent -> white background


def test_jsonl_is_read_like_csv(image_folder):
    path = image_folder / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"image": i, "caption": c}) for i, c in [("red.png", "r"), ("green.png", "g")]))
    data = load_image_text_file(path, image_size=2)
    assert data.captions == ["r", "g"] and data.labels is None


def test_missing_image_is_named_before_reading_or_skipped_with_a_count(image_folder):
    path = write_csv(image_folder, [("red.png", "r", "a"), ("gone.png", "x", "a"), ("lost.png", "y", "b")])
    with pytest.raises(FileNotFoundError, match=r"2 image files .*gone\.png"):
        load_image_text_file(path, image_size=2)
    with pytest.warns(UserWarning, match="skipped 2 missing image files"):
        data = load_image_text_file(path, image_size=2, on_missing="skip")
    assert data.captions == ["r"]


def test_hdf5_round_trip_and_mismatched_counts(tmp_path):
    images = torch.randint(0, 256, (3, 3, 5, 5), dtype=torch.uint8)
    data = ImageTextDataset(images, ["a", "b", "c", "d"], torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1]), ["x", "y"])
    save_image_text_hdf5(tmp_path / "d.h5", data)
    back = load_image_text_hdf5(tmp_path / "d.h5")
    assert torch.equal(back.images, images) and back.captions == data.captions
    assert torch.equal(back.caption_image, data.caption_image) and back.class_names == ["x", "y"]
    assert back.groups is None
    grouped = ImageTextDataset(images, ["a", "b", "c"], groups=torch.tensor([7, 7, 2]))
    save_image_text_hdf5(tmp_path / "g.h5", grouped)
    assert load_image_text_hdf5(tmp_path / "g.h5").groups.tolist() == [7, 7, 2]
    import h5py

    with h5py.File(tmp_path / "bad.h5", "w") as file:
        file["images"] = images.numpy()
        file.create_dataset("captions", data=["a", "b"], dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="bad.h5.*mismatched numbers of images and captions: 3 images and 2 captions"):
        load_image_text_hdf5(tmp_path / "bad.h5")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"captions": ["a", "b"]}, "mismatched numbers of images and captions"),
        ({"captions": ["a", "b"], "caption_image": torch.tensor([0, 0])}, "images have no caption"),
        ({"captions": ["a", "b"], "caption_image": torch.tensor([0, 3])}, "caption_image must index"),
        ({"captions": ["a", "b", "c"], "labels": torch.tensor([0, 1, 0])}, "class_names"),
        ({"captions": ["a", "b", "c"], "groups": torch.tensor([0.0, 1.0, 1.0])}, r"groups must be \(3,\) integers"),
        ({"captions": ["a", "b", "c"], "groups": torch.tensor([0, 1])}, r"groups must be \(3,\) integers"),
    ],
)
def test_inconsistent_datasets_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageTextDataset(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), **kwargs)


def test_subset_and_templates_keep_captions_with_their_images():
    data = caption_classes(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 1, 0]), ["cat", "dog"], ["a {}", "the {}"])
    assert data.captions[:4] == ["a cat", "the cat", "a dog", "the dog"]
    part = data.subset(torch.tensor([2, 0]))
    assert part.captions == ["a cat", "the cat", "a dog", "the dog"]
    assert part.caption_image.tolist() == [1, 1, 0, 0] and part.labels.tolist() == [1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = data.split(0.25, seed=0)
    assert len(train) == 3 and len(test) == 1 and len(test.captions) == 2


def original_images(part):
    """The original index of each image of a split part, in its order (each image's one caption is that index)."""
    return [int(part.captions[k]) for k in part.caption_image.argsort().tolist()]


def test_split_without_groups_draws_the_fraction_of_images_at_random():
    data = ImageTextDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), [str(i) for i in range(10)])
    train, test = data.split(0.3, seed=4)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))  # each image its own group
    assert original_images(train) == order[:7].tolist() and original_images(test) == order[7:].tolist()


@pytest.mark.parametrize("seed", range(5))
def test_split_keeps_every_group_on_one_side(seed):
    generator = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, 12, (40,), generator=generator) * 3  # 12 groups of unequal sizes, sparse ids
    data = ImageTextDataset(torch.zeros(40, 1, 2, 2, dtype=torch.uint8), [str(i) for i in range(40)], groups=groups)
    train, test = data.split(0.25, seed=seed)
    train_images, test_images = set(original_images(train)), set(original_images(test))
    assert train_images.isdisjoint(test_images) and len(train_images | test_images) == 40
    assert {int(groups[i]) for i in train_images}.isdisjoint({int(groups[i]) for i in test_images})
    assert torch.equal(test.groups, groups[original_images(test)])
    # the held-out part is the last groups of the shuffle, taken until they reach round(0.25 * 40) = 10 images:
    # without its first group (the one taken last) it would hold fewer than 10
    assert len(test) >= 10
    assert len(test) - int((test.groups == test.groups[0]).sum()) < 10


def test_split_needs_two_groups():
    data = ImageTextDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), ["a", "b", "c"], groups=torch.tensor([5, 5, 5]))
    with pytest.raises(ValueError, match="at least two groups"):
        data.split(0.5)


def test_table_group_column_gives_each_image_its_group(image_folder):
    path = image_folder / "pairs.csv"
    path.write_text("image,caption,group\nred.png,r,warm-set\ngreen.png,g,cold-set\nred.png,r2,warm-set\nclear.png,c,warm-set\n")
    data = load_image_text_file(path, image_size=2)
    assert data.groups.tolist() == [0, 1, 0]
    path.write_text("image,caption,group\nred.png,r,a\nred.png,r2,b\n")
    with pytest.raises(ValueError, match="image red.png has two group values"):
        load_image_text_file(path, image_size=2)
