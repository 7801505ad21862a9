"""Image variants: the digits data, augmentation views, the small CNN and SimCLR, with their builders."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.digits import load_digits
from contrastive_seq.experiments.build import build_data, build_encoder, build_method, build_views
from contrastive_seq.experiments.sections import DataConfig, EncoderConfig, MethodConfig, ViewsConfig
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.methods.base import Method
from contrastive_seq.methods.simclr import SimCLR
from contrastive_seq.models.heads import MLPHead
from contrastive_seq.models.small_cnn import SmallConvNet
from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.views.base import TransformedViews, Views
from contrastive_seq.views.image import simclr_augmentation


@DataConfig.register("digits")
@dataclass
class DigitsData(DataConfig):
    """scikit-learn's 8x8 digits, with a seeded held-out split for evaluation."""

    name: str = "digits"
    test_fraction: float = 0.25
    split_seed: int = 0


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


@EncoderConfig.register("small_cnn")
@dataclass
class SmallCNNEncoder(EncoderConfig):
    """:class:`contrastive_seq.models.SmallConvNet`."""

    name: str = "small_cnn"
    widths: tuple[int, ...] = (32, 64, 128)


@MethodConfig.register("simclr")
@dataclass
class SimCLRMethod(MethodConfig):
    """SimCLR: ``n_views`` augmentations per image, an MLP projection head, NT-Xent."""

    name: str = "simclr"
    temperature: float = 0.5
    n_views: int = 2
    projection_hidden_dim: int = 128
    projection_dim: int = 64


@build_data.register
def _(config: DigitsData) -> tuple[ArrayDataset, ArrayDataset]:
    return load_digits().split(config.test_fraction, seed=config.split_seed)


@build_views.register
def _(config: ImageAugmentationViews, data: ArrayDataset) -> Views:
    channels, height, width = data.inputs.shape[1:]
    if height != width:
        raise ValueError(f"image_augmentation views need square images, got {height}x{width}")
    transform = simclr_augmentation(
        size=height,
        channels=channels,
        crop_scale=config.crop_scale,
        flip=config.flip,
        jitter_strength=config.jitter_strength,
        jitter_probability=config.jitter_probability,
        grayscale_probability=config.grayscale_probability,
        blur_probability=config.blur_probability,
        solarize_probability=config.solarize_probability,
    )
    return TransformedViews(transform)


@build_encoder.register
def _(config: SmallCNNEncoder, data: ArrayDataset) -> nn.Module:
    return SmallConvNet(in_channels=data.inputs.shape[1], widths=config.widths)


@build_method.register
def _(config: SimCLRMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projection = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    method = SimCLR(encoder, projection, NTXent(temperature=config.temperature))
    return method, AugmentationSampler(len(data), n_views=config.n_views)
