"""The sections of an experiment config: one dataclass per named variant.

``data``, ``views``, ``encoder`` and ``method`` choose a variant by ``name``;
``train`` is the Trainer's own config; ``evaluation`` sets the probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contrastive_seq.config import Variants
from contrastive_seq.training.trainer import TrainerConfig


class DataConfig(Variants):
    """Which dataset to train on and how to hold out a test split."""


@DataConfig.register("digits")
@dataclass
class DigitsData(DataConfig):
    """scikit-learn's 8x8 digits, with a seeded held-out split for evaluation."""

    name: str = "digits"
    test_fraction: float = 0.25
    split_seed: int = 0


class ViewsConfig(Variants):
    """How sampled indices become model inputs."""


@ViewsConfig.register("image_augmentation")
@dataclass
class ImageAugmentationViews(ViewsConfig):
    """The SimCLR augmentation recipe (see :func:`contrastive_seq.views.image.simclr_augmentation`)."""

    name: str = "image_augmentation"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    jitter_strength: float = 1.0
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    solarize_probability: float = 0.0


class EncoderConfig(Variants):
    """The backbone that maps inputs to representations."""


@EncoderConfig.register("small_cnn")
@dataclass
class SmallCNNEncoder(EncoderConfig):
    """:class:`contrastive_seq.models.SmallConvNet`."""

    name: str = "small_cnn"
    widths: tuple[int, ...] = (32, 64, 128)


class MethodConfig(Variants):
    """The method: heads, loss and what it pairs."""


@MethodConfig.register("simclr")
@dataclass
class SimCLRMethod(MethodConfig):
    """SimCLR: ``n_views`` augmentations per image, an MLP projection head, NT-Xent."""

    name: str = "simclr"
    temperature: float = 0.5
    n_views: int = 2
    projection_hidden_dim: int = 128
    projection_dim: int = 64


@dataclass
class EvaluationConfig:
    """Downstream probes on the held-out split, run at the end (kNN also every ``train.eval_every`` steps)."""

    knn_k: int = 10
    labels_per_class: int = 5
    label_draws: int = 10
    linear_probe: bool = True


@dataclass
class ExperimentConfig:
    """A whole run: what data, presented how, encoded by what, trained how, evaluated how."""

    data: DataConfig = field(default_factory=DigitsData)
    views: ViewsConfig = field(default_factory=ImageAugmentationViews)
    encoder: EncoderConfig = field(default_factory=SmallCNNEncoder)
    method: MethodConfig = field(default_factory=SimCLRMethod)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
