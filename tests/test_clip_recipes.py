"""The emoji recipe on a tiny fake gemojione tree, and the open_clip side-by-side loss check."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from contrastive_seq.data.image_text import load_image_text_file, load_image_text_hdf5

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_gem(tmp_path):
    gem = tmp_path / "usr" / "gems" / "gemojione-3.3.0"
    (gem / "config").mkdir(parents=True)
    (gem / "assets" / "png").mkdir(parents=True)
    entries = {
        "cat": {"unicode": "1f431", "name": "cat face", "category": "nature", "keywords": ["animal", "cat", "pet"]},
        "dog": {"unicode": "1f436", "name": "dog face", "category": "nature", "keywords": []},
        "fr": {"unicode": "1f1eb-1f1f7", "name": "r&eacute;publique", "category": "flags", "keywords": ["france"]},
        "tone": {"unicode": "1f3fb", "name": "skin tone", "category": "modifier", "keywords": []},
        "ok": {"unicode": "1f44c", "name": "ok hand sign", "category": "people", "keywords": []},
        "ok_tone2": {"unicode": "1f44c-1f3fc", "name": "ok hand sign tone 2", "category": "people", "keywords": []},
    }
    (gem / "config" / "index.json").write_text(json.dumps(entries))
    for entry in entries.values():
        Image.new("RGBA", (64, 64), (200, 10, 10, 255)).save(gem / "assets" / "png" / f"{entry['unicode'].upper()}.png")
    return tmp_path, gem


def test_emoji_recipe_builds_hdf5_and_csv_from_the_gem(fake_gem, tmp_path):
    folder, gem = fake_gem
    recipe = load_script("datasets/emoji/build_emoji.py")
    assert recipe.find_gem_root(folder) == gem
    output, table = tmp_path / "emoji.h5", tmp_path / "emoji.csv"
    recipe.main(["--gem-root", str(folder), "--output", str(output), "--csv", str(table),
                 "--image-size", "16", "--min-category-size", "1"])
    data = load_image_text_hdf5(output)
    assert data.images.shape == (6, 3, 16, 16)
    assert data.class_names == ["flags", "modifier", "nature", "people"]
    assert "république, a flags emoji" in data.captions
    assert data.captions[data.caption_image.tolist().index(2)] == "cat face, a nature emoji"  # sorted by code point
    assert "a nature emoji of animal, pet" in data.captions  # keywords already in the name are left out
    # sorted: 1F1EB-1F1F7, 1F3FB, 1F431, 1F436, 1F44C, 1F44C-1F3FC; the two ok hands are one group, the tone swatch its own
    assert data.groups.tolist() == [0, 1, 2, 3, 4, 4]
    from_csv = load_image_text_file(table, image_size=16)
    assert from_csv.captions == data.captions and from_csv.labels.tolist() == data.labels.tolist()
    assert from_csv.groups.tolist() == data.groups.tolist()


def test_emoji_recipe_drops_small_categories_and_names_a_missing_png(fake_gem):
    folder, gem = fake_gem
    recipe = load_script("datasets/emoji/build_emoji.py")
    data = recipe.build_emoji_dataset(gem, image_size=8, min_category_size=2)
    assert data.class_names == ["nature", "people"] and len(data) == 4
    with pytest.raises(ValueError, match="min_category_size=10"):
        recipe.build_emoji_dataset(gem, image_size=8, min_category_size=10)
    (gem / "assets" / "png" / "1F436.png").unlink()
    with pytest.raises(FileNotFoundError, match="1F436.png"):
        recipe.build_emoji_dataset(gem, image_size=8, min_category_size=2)


def test_our_clip_loss_equals_open_clip_in_value_and_gradients():
    differences = load_script("benchmarks/clip_side_by_side.py").compare_losses(rows=64, dim=16)
    assert differences["value_abs_diff"] < 1e-12
    for name in ("grad_image_max_abs_diff", "grad_text_max_abs_diff", "grad_log_logit_scale_max_abs_diff"):
        assert differences[name] < 1e-12
