"""Build the parts of an experiment from its config sections (one function per variant)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

from torch import nn

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.digits import load_digits
from contrastive_seq.experiments.sections import (
    DigitsData,
    ExperimentConfig,
    ImageAugmentationViews,
    SimCLRMethod,
    SmallCNNEncoder,
)
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.methods.base import Method
from contrastive_seq.methods.simclr import SimCLR
from contrastive_seq.models.heads import MLPHead
from contrastive_seq.models.small_cnn import SmallConvNet
from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.views.base import TransformedViews, Views
from contrastive_seq.views.image import simclr_augmentation


@dataclass
class Experiment:
    """Everything the Trainer and the evaluation need, built from one config."""

    method: Method
    sampler: Sampler
    views: Views
    train_data: ArrayDataset
    test_data: ArrayDataset


@singledispatch
def build_data(config: object) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` datasets for a ``data`` section."""
    raise TypeError(f"no data builder for {type(config).__name__}")


@build_data.register
def _(config: DigitsData) -> tuple[ArrayDataset, ArrayDataset]:
    return load_digits().split(config.test_fraction, seed=config.split_seed)


@singledispatch
def build_views(config: object, data: ArrayDataset) -> Views:
    """The views step for a ``views`` section, sized to ``data``'s samples."""
    raise TypeError(f"no views builder for {type(config).__name__}")


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


@singledispatch
def build_encoder(config: object, data: ArrayDataset) -> nn.Module:
    """The encoder for an ``encoder`` section; it exposes ``output_dim``."""
    raise TypeError(f"no encoder builder for {type(config).__name__}")


@build_encoder.register
def _(config: SmallCNNEncoder, data: ArrayDataset) -> nn.Module:
    return SmallConvNet(in_channels=data.inputs.shape[1], widths=config.widths)


@singledispatch
def build_method(config: object, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    """The method and the sampler it pairs with, for a ``method`` section."""
    raise TypeError(f"no method builder for {type(config).__name__}")


@build_method.register
def _(config: SimCLRMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projection = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    method = SimCLR(encoder, projection, NTXent(temperature=config.temperature))
    return method, AugmentationSampler(len(data), n_views=config.n_views)


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Build data, views, encoder, method and sampler (no training yet)."""
    train_data, test_data = build_data(config.data)
    views = build_views(config.views, train_data)
    encoder = build_encoder(config.encoder, train_data)
    method, sampler = build_method(config.method, encoder, train_data)
    return Experiment(method, sampler, views, train_data, test_data)
