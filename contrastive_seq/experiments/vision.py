"""Vision variants: Fashion-MNIST, image folders and HDF5 images; BYOL and multi-crop views;
torchvision backbones; MoCo, BYOL, DINO, SupCon, SimSiam, Barlow Twins, VICReg, SwAV,
NNCLR and triplet metric learning, with their builders.

SimCLR, the ``image_augmentation`` views and the ``small_cnn`` encoder live in
:mod:`contrastive_seq.experiments.images`; every variant here combines with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.fashion_mnist import DEFAULT_ROOT, load_fashion_mnist
from contrastive_seq.data.hdf5_images import load_hdf5_images
from contrastive_seq.data.image_folder import load_image_folder
from contrastive_seq.experiments.build import build_data, build_encoder, build_method, build_views
from contrastive_seq.experiments.sections import DataConfig, EncoderConfig, MethodConfig, ViewsConfig
from contrastive_seq.losses.byol import BYOLLoss
from contrastive_seq.losses.dino import DINOLoss
from contrastive_seq.losses.margin import MinedTripletMargin
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from contrastive_seq.losses.simsiam import SimSiamLoss
from contrastive_seq.losses.swav import SwAVLoss
from contrastive_seq.losses.supcon import SupCon as SupConLoss
from contrastive_seq.methods.base import Method
from contrastive_seq.methods.byol import BYOL
from contrastive_seq.methods.dino import DINO
from contrastive_seq.methods.moco import MoCo
from contrastive_seq.methods.nnclr import NNCLR
from contrastive_seq.methods.redundancy import BarlowTwins, VICReg
from contrastive_seq.methods.simsiam import SimSiam
from contrastive_seq.methods.supcon import SupCon
from contrastive_seq.methods.swav import SwAV
from contrastive_seq.methods.triplet import TripletMetric
from contrastive_seq.models.backbones import image_backbone
from contrastive_seq.models.dino_head import DINOHead
from contrastive_seq.models.heads import MLPHead, Prototypes
from contrastive_seq.sampling.augmentation import AugmentationSampler
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.sampling.same_class import SameClassSampler
from contrastive_seq.views.base import Views
from contrastive_seq.views.image import byol_augmentations, multicrop_augmentations
from contrastive_seq.views.multicrop import MultiCropViews

# ----------------------------------------------------------------------------- data


@DataConfig.register("fashion_mnist")
@dataclass
class FashionMNISTData(DataConfig):
    """Fashion-MNIST's official split (60,000 / 10,000), optionally a seeded random subset of each."""

    name: str = "fashion_mnist"
    root: str = str(DEFAULT_ROOT)
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0


@DataConfig.register("image_folder")
@dataclass
class ImageFolderData(DataConfig):
    """Class folders (``root/<class>/<image>``); a test folder, or a seeded fraction held out."""

    name: str = "image_folder"
    root: str = ""
    test_root: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    image_size: int = 64
    channels: int = 3


@DataConfig.register("hdf5_images")
@dataclass
class HDF5ImagesData(DataConfig):
    """HDF5 files with ``images (n, C, H, W)`` and ``labels (n,)``; a test file, or a seeded fraction held out."""

    name: str = "hdf5_images"
    path: str = ""
    test_path: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0


def _subset(data: ArrayDataset, size: int | None, seed: int, key: str) -> ArrayDataset:
    """``size`` samples of ``data`` drawn without replacement by a seeded permutation (all when ``None``)."""
    if size is None:
        return data
    if isinstance(size, bool) or not 1 <= size <= len(data):
        raise ValueError(f"{key} must be None or an int in [1, {len(data)}], got {size!r}")
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return ArrayDataset(data.inputs[rows], None if data.labels is None else data.labels[rows])


@build_data.register
def _(config: FashionMNISTData) -> tuple[ArrayDataset, ArrayDataset]:
    train = _subset(load_fashion_mnist("train", config.root), config.train_subset, config.subset_seed, "train_subset")
    test = _subset(load_fashion_mnist("test", config.root), config.test_subset, config.subset_seed, "test_subset")
    return train, test


@build_data.register
def _(config: ImageFolderData) -> tuple[ArrayDataset, ArrayDataset]:
    train, _ = load_image_folder(config.root, config.image_size, config.channels)
    if config.test_root is None:
        return train.split(config.test_fraction, seed=config.split_seed)
    test, _ = load_image_folder(config.test_root, config.image_size, config.channels)
    return train, test


@build_data.register
def _(config: HDF5ImagesData) -> tuple[ArrayDataset, ArrayDataset]:
    train = load_hdf5_images(config.path)
    if config.test_path is None:
        return train.split(config.test_fraction, seed=config.split_seed)
    return train, load_hdf5_images(config.test_path)


# ----------------------------------------------------------------------------- views


def _image_geometry(data: ArrayDataset, views: str) -> tuple[int, int]:
    """``(channels, side)`` of the square images ``(n, C, H, W)`` of ``data``."""
    if data.inputs.dim() != 4:
        raise ValueError(f"{views} views need images (n, C, H, W), got data of shape {tuple(data.inputs.shape)}")
    channels, height, width = data.inputs.shape[1:]
    if height != width:
        raise ValueError(f"{views} views need square images, got {height}x{width}")
    return channels, height


@ViewsConfig.register("byol_augmentation")
@dataclass
class BYOLViews(ViewsConfig):
    """BYOL's two asymmetric recipes (see :func:`contrastive_seq.views.image.byol_augmentations`)."""

    name: str = "byol_augmentation"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    jitter_strength: float = 1.0
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probabilities: tuple[float, float] = (1.0, 0.1)
    solarize_probabilities: tuple[float, float] = (0.0, 0.2)


@ViewsConfig.register("multicrop")
@dataclass
class MultiCropViewsConfig(ViewsConfig):
    """DINO's two global crops at the image size and ``n_local`` local crops at ``local_size``."""

    name: str = "multicrop"
    local_size: int = 96
    n_local: int = 6
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    flip: bool = True
    jitter_strength: float = 1.0
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    global_blur_probabilities: tuple[float, float] = (1.0, 0.1)
    global_solarize_probabilities: tuple[float, float] = (0.0, 0.2)
    local_blur_probability: float = 0.5


@build_views.register
def _(config: BYOLViews, data: ArrayDataset) -> Views:
    channels, size = _image_geometry(data, "byol_augmentation")
    transforms = byol_augmentations(
        size,
        channels,
        config.crop_scale,
        config.flip,
        config.jitter_strength,
        config.jitter_probability,
        config.grayscale_probability,
        config.blur_probabilities,
        config.solarize_probabilities,
    )
    return MultiCropViews(transforms)


@build_views.register
def _(config: MultiCropViewsConfig, data: ArrayDataset) -> Views:
    channels, size = _image_geometry(data, "multicrop")
    global_transforms, local_transform = multicrop_augmentations(
        size,
        config.local_size,
        channels,
        config.global_scale,
        config.local_scale,
        config.flip,
        config.jitter_strength,
        config.jitter_probability,
        config.grayscale_probability,
        config.global_blur_probabilities,
        config.global_solarize_probabilities,
        config.local_blur_probability,
    )
    return MultiCropViews(global_transforms, local_transform, config.n_local)


# ----------------------------------------------------------------------------- encoders


@EncoderConfig.register("torchvision")
@dataclass
class TorchvisionEncoder(EncoderConfig):
    """A torchvision ResNet or ViT by name, random weights (:func:`contrastive_seq.models.backbones.image_backbone`)."""

    name: str = "torchvision"
    arch: str = "resnet18"
    small_images: bool = False
    patch_size: int = 16


@build_encoder.register
def _(config: TorchvisionEncoder, data: ArrayDataset) -> nn.Module:
    channels, size = _image_geometry(data, "torchvision encoder")
    is_vit = config.arch.startswith("vit_")
    return image_backbone(
        config.arch,
        in_channels=channels,
        small_images=config.small_images,
        image_size=size if is_vit else None,
        patch_size=config.patch_size,
    )


# ----------------------------------------------------------------------------- methods


@dataclass
class MomentumConfig:
    """The momentum schedule shared by MoCo, BYOL and DINO (``momentum_steps: null``: ``train.max_steps``)."""

    base_momentum: float = 0.99
    final_momentum: float = 1.0
    momentum_steps: int | None = None


@MethodConfig.register("moco")
@dataclass
class MoCoMethod(MethodConfig, MomentumConfig):
    """MoCo: v2 is ``queue_size: 4096, symmetric: false, predictor: false``; v3 is ``queue_size: null,
    symmetric: true, predictor: true``."""

    name: str = "moco"
    temperature: float = 0.2
    queue_size: int | None = 4096
    symmetric: bool = False
    predictor: bool = False
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    predictor_hidden_dim: int = 512


@MethodConfig.register("byol")
@dataclass
class BYOLMethod(MethodConfig, MomentumConfig):
    """BYOL: projector and predictor MLPs, a momentum target."""

    name: str = "byol"
    base_momentum: float = 0.996
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    predictor_hidden_dim: int = 512


@MethodConfig.register("dino")
@dataclass
class DINOMethod(MethodConfig, MomentumConfig):
    """DINO: head sizes, temperatures (teacher warm-up in steps), centre momentum, teacher momentum."""

    name: str = "dino"
    base_momentum: float = 0.996
    out_dim: int = 4096
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    num_layers: int = 3
    batch_norm: bool = False
    norm_last_layer: bool = True
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    warmup_teacher_temperature: float = 0.04
    warmup_steps: int = 0
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 0


@MethodConfig.register("supcon")
@dataclass
class SupConMethod(MethodConfig):
    """SupCon: positives are same-class images (``same_class``) or views of one labelled image (``augmentation``)."""

    name: str = "supcon"
    temperature: float = 0.1
    sampler: Literal["same_class", "augmentation"] = "same_class"
    projection_hidden_dim: int = 512
    projection_dim: int = 128


def _momentum(config: MomentumConfig) -> dict[str, object]:
    return {
        "base_momentum": config.base_momentum,
        "final_momentum": config.final_momentum,
        "momentum_steps": config.momentum_steps,
    }


@build_method.register
def _(config: MoCoMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projection = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    predictor = None
    if config.predictor:
        predictor = MLPHead(config.projection_dim, config.predictor_hidden_dim, config.projection_dim)
    method = MoCo(
        encoder,
        projection,
        MoCoLoss(temperature=config.temperature),
        predictor=predictor,
        queue_size=config.queue_size,
        symmetric=config.symmetric,
        **_momentum(config),
    )
    return method, AugmentationSampler(len(data))


@build_method.register
def _(config: BYOLMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    predictor = MLPHead(config.projection_dim, config.predictor_hidden_dim, config.projection_dim)
    return BYOL(encoder, projector, predictor, BYOLLoss(), **_momentum(config)), AugmentationSampler(len(data))


@build_method.register
def _(config: DINOMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    head = DINOHead(
        encoder.output_dim,
        config.out_dim,
        config.hidden_dim,
        config.bottleneck_dim,
        config.num_layers,
        config.batch_norm,
        config.norm_last_layer,
    )
    loss = DINOLoss(
        config.out_dim,
        config.student_temperature,
        config.teacher_temperature,
        config.warmup_teacher_temperature,
        config.warmup_steps,
        config.center_momentum,
    )
    method = DINO(encoder, head, loss, **_momentum(config), freeze_last_layer_steps=config.freeze_last_layer_steps)
    return method, AugmentationSampler(len(data))


@build_method.register
def _(config: SupConMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    if data.labels is None:
        raise ValueError("the supcon method needs labelled training data (data with labels)")
    projection = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    method = SupCon(encoder, projection, SupConLoss(temperature=config.temperature))
    if config.sampler == "same_class":
        return method, SameClassSampler(data.labels)
    return method, AugmentationSampler(len(data))


@MethodConfig.register("simsiam")
@dataclass
class SimSiamMethod(MethodConfig):
    """SimSiam: a 3-layer projector (BatchNorm on its output), a bottleneck predictor at a fixed rate."""

    name: str = "simsiam"
    projection_hidden_dim: int = 512
    projection_dim: int = 512
    predictor_hidden_dim: int = 128
    fixed_predictor_lr: bool = True


@build_method.register
def _(config: SimSiamMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(
        encoder.output_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3, output_batch_norm=True
    )
    predictor = MLPHead(config.projection_dim, config.predictor_hidden_dim, config.projection_dim)
    method = SimSiam(encoder, projector, predictor, SimSiamLoss(), config.fixed_predictor_lr)
    return method, AugmentationSampler(len(data))


@MethodConfig.register("barlow_twins")
@dataclass
class BarlowTwinsMethod(MethodConfig):
    """Barlow Twins: a 3-layer projector, the off-diagonal weight lambda."""

    name: str = "barlow_twins"
    projection_hidden_dim: int = 1024
    projection_dim: int = 1024
    lambda_offdiag: float = 5e-3


@build_method.register
def _(config: BarlowTwinsMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3)
    return BarlowTwins(encoder, projector, BarlowTwinsLoss(config.lambda_offdiag)), AugmentationSampler(len(data))


@MethodConfig.register("vicreg")
@dataclass
class VICRegMethod(MethodConfig):
    """VICReg: a 3-layer projector and the weights of the invariance, variance and covariance terms."""

    name: str = "vicreg"
    projection_hidden_dim: int = 1024
    projection_dim: int = 1024
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0


@build_method.register
def _(config: VICRegMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3)
    loss = VICRegLoss(config.invariance_weight, config.variance_weight, config.covariance_weight)
    return VICReg(encoder, projector, loss), AugmentationSampler(len(data))


@MethodConfig.register("nnclr")
@dataclass
class NNCLRMethod(MethodConfig):
    """NNCLR: projector, predictor, NT-Xent temperature and the support set's size."""

    name: str = "nnclr"
    temperature: float = 0.1
    support_size: int = 8192
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    predictor_hidden_dim: int = 512


@build_method.register
def _(config: NNCLRMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim, num_layers=3)
    predictor = MLPHead(config.projection_dim, config.predictor_hidden_dim, config.projection_dim)
    method = NNCLR(encoder, projector, predictor, NTXent(temperature=config.temperature), config.support_size)
    return method, AugmentationSampler(len(data))


@MethodConfig.register("triplet")
@dataclass
class TripletMethod(MethodConfig):
    """Triplet metric learning on same-class pairs: margin, distance, mining, an optional projection head."""

    name: str = "triplet"
    margin: float = 0.2
    distance: Literal["euclidean", "cosine"] = "euclidean"
    mining: Literal["batch_hard", "semi_hard"] = "semi_hard"
    projection_dim: int | None = 128
    normalize: bool = True


@build_method.register
def _(config: TripletMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    if data.labels is None:
        raise ValueError("the triplet method needs labelled training data (data with labels)")
    head = nn.Identity() if config.projection_dim is None else nn.Linear(encoder.output_dim, config.projection_dim)
    loss = MinedTripletMargin(config.margin, config.distance, config.mining)
    method = TripletMetric(encoder, head, loss, config.normalize)
    return method, SameClassSampler(data.labels)


@MethodConfig.register("swav")
@dataclass
class SwAVMethod(MethodConfig):
    """SwAV: projector, prototypes, Sinkhorn-Knopp settings, prototype freeze and an optional queue (rows per rank)."""

    name: str = "swav"
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    prototypes: int = 300
    temperature: float = 0.1
    sinkhorn_iterations: int = 3
    epsilon: float = 0.05
    freeze_prototypes_steps: int = 0
    queue_size: int | None = None


@build_method.register
def _(config: SwAVMethod, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    projector = MLPHead(encoder.output_dim, config.projection_hidden_dim, config.projection_dim)
    loss = SwAVLoss(config.temperature, config.sinkhorn_iterations, config.epsilon)
    prototypes = Prototypes(config.projection_dim, config.prototypes)
    method = SwAV(encoder, projector, prototypes, loss, config.freeze_prototypes_steps, config.queue_size)
    return method, AugmentationSampler(len(data))
