"""Image-caption tables as open_clip reads them: TSV with filepath / title, any separator and keys, empty captions."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from contrastive_seq.data.image_text import load_image_text_file


@pytest.fixture
def folder(tmp_path):
    for name, colour in (("red.png", (255, 0, 0)), ("blue.png", (0, 0, 255)), ("green.png", (0, 255, 0))):
        Image.fromarray(np.full((6, 6, 3), colour, dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_open_clip_tsv_with_filepath_and_title_loads_and_says_zero_shot_is_unavailable(folder):
    table = write(folder / "train.tsv", ["filepath\ttitle", "red.png\ta red square, bright", "blue.png\ta blue square"])
    with pytest.warns(UserWarning, match="2 of 2 rows have no 'label'.*zero-shot classification is not available"):
        data = load_image_text_file(table, image_size=4, image_key="filepath", caption_key="title")
    assert data.captions == ["a red square, bright", "a blue square"] and data.labels is None
    assert data.images[0, :, 0, 0].tolist() == [255, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image_text_file(table, 4, image_key="filepath", caption_key="title", label_key=None).labels is None


def test_separator_and_keys_like_open_clips_csv_options(folder):
    table = write(folder / "pairs.txt", ["img;text;kind", "red.png;warm;hot", "blue.png;cool;cold", "green.png;fresh;cold"])
    data = load_image_text_file(table, 4, image_key="img", caption_key="text", label_key="kind", separator=";")
    assert data.class_names == ["cold", "hot"] and data.labels.tolist() == [1, 0, 0]
    lines = [json.dumps({"path": "red.png", "text": "r"}), json.dumps({"path": "green.png", "text": "g"})]
    jsonl = write(folder / "pairs.jsonl", lines)
    assert load_image_text_file(jsonl, 4, image_key="path", caption_key="text", label_key=None).captions == ["r", "g"]


def test_an_empty_caption_is_an_error_naming_the_row_or_skipped_with_a_count(folder):
    table = write(folder / "pairs.csv", ["image,caption,label", "red.png,warm,a", "blue.png,  ,b", "green.png,,b"])
    with pytest.raises(ValueError, match=r"2 of 3 rows of .*pairs.csv have an empty 'caption' \(first: row 2\)"):
        load_image_text_file(table, 4)
    with pytest.warns(UserWarning, match="2 of 3 rows .* empty 'caption'.*skipped"):
        data = load_image_text_file(table, 4, on_empty_caption="skip")
    assert data.captions == ["warm"] and len(data) == 1


def test_missing_columns_folders_and_damaged_images_are_named(folder):
    table = write(folder / "train.tsv", ["filepath\ttitle", "red.png\tr"])
    with pytest.raises(ValueError, match=r"train.tsv has no column 'image'; its columns are \['filepath', 'title'\]"):
        load_image_text_file(table, 4)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_image_text_file(folder, 4)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bad = write(folder / "bad.csv", ["image,caption", "bad.png,broken"])
    with pytest.raises(ValueError, match=r"image file .*bad.png cannot be decoded"):
        load_image_text_file(bad, 4, label_key=None)
