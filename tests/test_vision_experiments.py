"""The Fashion-MNIST configs end to end (on a miniature Fashion-MNIST), the vision variants and their errors."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_seq.cli import main
from contrastive_seq.config import ConfigError
from contrastive_seq.experiments import (
    build_experiment,
    load_experiment_config,
    run_experiment,
)
from contrastive_seq.methods.byol import BYOL
from contrastive_seq.methods.dino import DINO
from contrastive_seq.methods.moco import MoCo
from contrastive_seq.methods.nnclr import NNCLR
from contrastive_seq.methods.redundancy import BarlowTwins, VICReg
from contrastive_seq.methods.simclr import SimCLR
from contrastive_seq.methods.simsiam import SimSiam
from contrastive_seq.methods.supcon import SupCon
from contrastive_seq.methods.swav import SwAV
from contrastive_seq.methods.triplet import TripletMetric
from contrastive_seq.models import MLPHead
from contrastive_seq.models.backbones import ResNetBackbone
from contrastive_seq.sampling import AugmentationSampler, SameClassSampler

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "dino": DINO, "supcon": SupCon}
METHODS |= {"simsiam": SimSiam, "barlow_twins": BarlowTwins, "vicreg": VICReg, "swav": SwAV, "nnclr": NNCLR,
            "triplet": TripletMetric}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A miniature Fashion-MNIST (60 training and 20 test images, every class present) in the package's layout."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 80, (n, 28, 28)) + 15 * labels[:, None, None]  # classes differ in brightness
        for name, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            with gzip.open(root / f"{prefix}-{name}-ubyte.gz", "wb") as file:
                file.write(np.array([magic, *array.shape], dtype=">i4").tobytes() + array.astype(np.uint8).tobytes())
    return root


def tiny(root, steps=2):
    return [
        f"data.root={root}",
        "data.train_subset=null",  # the configs take 10,000 of the 60,000 training images; the fixture has 60
        f"train.max_steps={steps}",
        "train.warmup_steps=0",
        "train.batch_size=8",
        "train.num_workers=0",
        "train.progress=false",
        "train.output_dir=null",
        "train.eval_every=null",
        "evaluation.label_draws=1",
        "evaluation.linear_probe=false",  # the probe is tested with the probes; here it would only cost time
    ]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_fashion_mnist_config_trains_and_is_probed(method, fashion_root):
    config = load_experiment_config(CONFIGS / f"{method}_fashion_mnist.yaml", tiny(fashion_root))
    assert config.method.name == method and config.data.name == "fashion_mnist"
    if method == "moco":  # the queue must hold whole batches of 8 keys
        config.method.queue_size = 32
    results = run_experiment(config)
    assert set(results) == {"raw inputs", "random encoder", f"{method} (trained)"}
    for scores in results.values():
        assert set(scores) == {"knn10_accuracy", "1nn_5_per_class_accuracy"}
        assert all(0 <= value <= 1 for value in scores.values())


def test_configs_build_the_intended_parts(fashion_root):
    parts = {}
    for method, kind in METHODS.items():
        experiment = build_experiment(load_experiment_config(CONFIGS / f"{method}_fashion_mnist.yaml", tiny(fashion_root)))
        assert isinstance(experiment.method, kind)
        parts[method] = experiment
    assert isinstance(parts["supcon"].sampler, SameClassSampler)
    assert all(isinstance(parts[m].sampler, AugmentationSampler) for m in ("simclr", "moco", "byol", "dino"))
    assert parts["moco"].method.queue is not None  # the config is MoCo v2
    dino_batch = parts["dino"].views(parts["dino"].data.train, parts["dino"].sampler.sample(4, torch.Generator()), torch.Generator())
    assert dino_batch["views"].shape[-1] == 28 and dino_batch["local_views"].shape[-1] < 28


def test_moco_v3_config_has_no_queue_a_predictor_and_both_directions(fashion_root):
    config = load_experiment_config(CONFIGS / "moco_v3_fashion_mnist.yaml", tiny(fashion_root))
    experiment = build_experiment(config)
    method = experiment.method
    assert isinstance(method, MoCo) and method.queue is None and method.symmetric
    assert isinstance(method.predictor, MLPHead)
    results = run_experiment(config)
    assert set(results) == {"raw inputs", "random encoder", "moco (trained)"}


def test_cli_trains_moco_v3_and_logs_collapse(fashion_root, tmp_path):
    overrides = tiny(fashion_root, steps=3) + [
        f"train.output_dir={tmp_path}",
        "train.eval_every=3",
        "method.queue_size=null",
        "method.symmetric=true",
        "method.predictor=true",
    ]
    assert main(["train", str(CONFIGS / "moco_fashion_mnist.yaml"), *overrides]) == 0
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3
    assert {"knn_accuracy", "embedding_std", "embedding_std_ratio"} <= set(last["eval"])
    assert 0 < last["eval"]["embedding_std"] <= 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["method"]["queue_size"] is None and "moco (trained)" in saved["results"]


def test_torchvision_encoder_adapts_to_the_data(fashion_root):
    config = load_experiment_config(
        CONFIGS / "byol_fashion_mnist.yaml",
        tiny(fashion_root) + ["encoder={name: torchvision, arch: resnet18, small_images: true}"],
    )
    experiment = build_experiment(config)
    backbone = experiment.method.online[0]
    assert isinstance(backbone, ResNetBackbone) and backbone.in_channels == 1
    pairs = experiment.sampler.sample(4, torch.Generator().manual_seed(0))
    batch = experiment.views(experiment.data.train, pairs, torch.Generator().manual_seed(1))
    assert batch["views"].shape == (2, 4, 1, 28, 28)
    assert torch.isfinite(experiment.method.training_step(batch).loss)


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.queue_size=many", "config.method.queue_size"),
        ("method.sampler=random", "config.method.sampler"),
        ("views.blur_probabilities=[0.5]", "config.views.blur_probabilities"),
        ("data.train_subset=0", "train_subset"),
    ],
)
def test_bad_vision_config_values_name_the_key(override, key, fashion_root):
    config_name = "supcon" if "sampler" in override else "moco" if "queue" in override else "byol"
    with pytest.raises((ConfigError, ValueError), match=key):
        build_experiment(load_experiment_config(CONFIGS / f"{config_name}_fashion_mnist.yaml", [*tiny(fashion_root), override]))


def test_cli_refuses_a_batch_larger_than_the_data_in_one_line(fashion_root, tmp_path, capsys):
    overrides = [*tiny(fashion_root), f"train.output_dir={tmp_path}", "train.batch_size=5000"]
    assert main(["train", str(CONFIGS / "simclr_fashion_mnist.yaml"), *overrides]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "batch_size=5,000 is larger than the 60 training samples" in error, error
