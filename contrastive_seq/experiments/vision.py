"""The image domain: image data (digits, Fashion-MNIST, image folders, HDF5 images), augmentation views,
image encoders, the image SSL methods (SimCLR, MoCo, BYOL, DINO, SupCon, SimSiam, Barlow Twins, VICReg,
SwAV, NNCLR, triplet metric learning) and the ``probes`` evaluation.

Every variant here combines with every other; heavy dependencies
(torchvision, scikit-learn) are imported by the builders when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from contrastive_seq.config import ConfigError
from contrastive_seq.data.fashion_mnist import DEFAULT_ROOT
from contrastive_seq.experiments.sections import (
    DataConfig,
    DataSplit,
    EncoderConfig,
    EvaluationConfig,
    Evaluator,
    ExperimentConfig,
    MethodConfig,
    MissingLabels,
    ViewsConfig,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from contrastive_seq.data.arrays import ArrayDataset
    from contrastive_seq.experiments.run import Experiment
    from contrastive_seq.methods.base import Method
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views

# ----------------------------------------------------------------------------- data


def _split(data: ArrayDataset, fraction: float, seed: int, key: str) -> tuple[ArrayDataset, ArrayDataset]:
    if not 0 < fraction < 1:
        raise ConfigError(f"data.{key} must lie in (0, 1), got {fraction!r}")
    return data.split(fraction, seed=seed)


def _images(train: ArrayDataset, test: ArrayDataset) -> DataSplit:
    return DataSplit(train, test, tuple(train.inputs.shape[1:]))


@DataConfig.register("digits")
@dataclass
class DigitsData(DataConfig):
    """scikit-learn's 8x8 digits, with a seeded held-out split for evaluation."""

    evaluation: ClassVar[str] = "probes"
    name: str = "digits"
    test_fraction: float = 0.25
    split_seed: int = 0

    def build(self, config: ExperimentConfig) -> DataSplit:
        from contrastive_seq.data.digits import load_digits

        return _images(*_split(load_digits(), self.test_fraction, self.split_seed, "test_fraction"))


def _subset(data: ArrayDataset, size: int | None, seed: int, key: str) -> ArrayDataset:
    """``size`` samples of ``data`` drawn without replacement by a seeded permutation (all when ``None``)."""
    import torch

    from contrastive_seq.data.arrays import ArrayDataset

    if size is None:
        return data
    if isinstance(size, bool) or not 1 <= size <= len(data):
        raise ConfigError(f"data.{key} must be null or an int in [1, {len(data)}], got {size!r}")
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return ArrayDataset(data.inputs[rows], None if data.labels is None else data.labels[rows])


@DataConfig.register("fashion_mnist")
@dataclass
class FashionMNISTData(DataConfig):
    """Fashion-MNIST's official split (60,000 / 10,000), optionally a seeded random subset of each."""

    evaluation: ClassVar[str] = "probes"
    name: str = "fashion_mnist"
    root: str = str(DEFAULT_ROOT)
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0

    def build(self, config: ExperimentConfig) -> DataSplit:
        from contrastive_seq.data.fashion_mnist import load_fashion_mnist

        train = _subset(load_fashion_mnist("train", self.root), self.train_subset, self.subset_seed, "train_subset")
        test = _subset(load_fashion_mnist("test", self.root), self.test_subset, self.subset_seed, "test_subset")
        return _images(train, test)


@DataConfig.register("image_folder")
@dataclass
class ImageFolderData(DataConfig):
    """A folder of images (see :func:`~contrastive_seq.data.image_folder.load_images`), decoded from disk as batches ask.

    ``labels``: ``folders`` reads class folders (``path/<class>/<image>``),
    ``null`` every image under ``path`` unlabelled (the run trains and saves;
    no probes). ``on_corrupt``: ``error`` names an unreadable file before
    training, ``skip`` leaves such files out with a counted warning. A
    ``test_path`` folder, or a seeded ``test_fraction``, is held out; the
    probes decode both parts once, after training.
    """

    evaluation: ClassVar[str] = "probes"
    name: str = "image_folder"
    path: str = ""
    test_path: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    image_size: int = 64
    channels: int = 3
    labels: Literal["folders"] | None = "folders"
    on_corrupt: Literal["error", "skip"] = "error"

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path must name the image folder")

    def read(self, path: str, labels: str | None) -> Any:
        """The :class:`~contrastive_seq.data.image_folder.ImageFiles` of folder ``path`` with this section's settings."""
        from contrastive_seq.data.image_folder import load_images

        return load_images(path, self.image_size, self.channels, labels, self.on_corrupt)

    def build(self, config: ExperimentConfig) -> DataSplit:
        train = self.read(self.path, self.labels)
        if self.test_path is None:
            if not 0 < self.test_fraction < 1:
                raise ConfigError(f"data.test_fraction must lie in (0, 1), got {self.test_fraction!r}")
            train, test = train.split(self.test_fraction, seed=self.split_seed)
        else:
            test = self.read(self.test_path, self.labels)
        return DataSplit(train, test, train.sample_shape)

    def samples(self, part: Any) -> Any:
        """The lazily decoded images of one part (:class:`~contrastive_seq.data.image_folder.ImageFiles`)."""
        return part

    def read_samples(self, path: str) -> Any:
        """Every image under folder ``path`` (recursive, in sorted path order: class folders or not), decoded lazily."""
        return self.read(path, None)


@DataConfig.register("hdf5_images")
@dataclass
class HDF5ImagesData(DataConfig):
    """HDF5 files with ``images (n, C, H, W)`` and ``labels (n,)``; a test file, or a seeded fraction held out."""

    evaluation: ClassVar[str] = "probes"
    name: str = "hdf5_images"
    path: str = ""
    test_path: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0

    def build(self, config: ExperimentConfig) -> DataSplit:
        from contrastive_seq.data.hdf5_images import load_hdf5_images

        train = load_hdf5_images(self.path)
        if self.test_path is None:
            return _images(*_split(train, self.test_fraction, self.split_seed, "test_fraction"))
        return _images(train, load_hdf5_images(self.test_path))


@DataConfig.register("image_shards")
@dataclass
class ImageShardsData(DataConfig):
    """Images in WebDataset shards (see :mod:`contrastive_seq.data.shards`), read by index: never loaded whole.

    ``shards``: a brace pattern (``images-{000000..000099}.tar``), several
    joined by ``::``, or a list. Images are decoded as RGB at ``image_size``;
    a sample's optional ``cls`` is its class, named by ``class_names``
    (default ``"0"``, ``"1"``, ...). ``on_missing``: ``error`` names the shard
    and key of a sample without an image, ``skip`` drops such samples with
    a counted warning. ``test_shards``, or a seeded ``test_fraction``, is held
    out. Probes run after training when every sample has a class; they decode
    both parts into memory once, so hold out a small part (``test_shards``)
    or set ``evaluation: {name: none}`` for large sets. Each shard's index is
    cached in ``index_dir`` (default: beside the shard) and rebuilt when the shard changes.
    """

    evaluation: ClassVar[str] = "probes"
    name: str = "image_shards"
    shards: str | list[str] = ""
    test_shards: str | list[str] | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    image_size: int = 64
    on_missing: Literal["error", "skip"] = "error"
    class_names: list[str] | None = None
    index_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.shards:
            raise ConfigError("data.shards must name the shards: a brace pattern such as 'shards-{000000..000099}.tar'")

    def read(self, shards: str | list[str]) -> Any:
        """The :class:`~contrastive_seq.data.shards.ShardedImages` of ``shards`` with this section's settings."""
        from contrastive_seq.data.shards import ShardedImages

        return ShardedImages(shards, self.image_size, self.on_missing, self.class_names, self.index_dir)

    def build(self, config: ExperimentConfig) -> DataSplit:
        train = self.read(self.shards)
        if self.test_shards is None:
            if not 0 < self.test_fraction < 1:
                raise ConfigError(f"data.test_fraction must lie in (0, 1), got {self.test_fraction!r}")
            train, test = train.split(self.test_fraction, seed=self.split_seed)
        else:
            test = self.read(self.test_shards)
        return DataSplit(train, test, train.sample_shape)

    def samples(self, part: Any) -> Any:
        """The images of one part, decoded as embedding reads them."""
        return part

    def read_samples(self, path: str) -> Any:
        """Every image of the shard list ``path`` (a brace pattern), decoded as embedding reads them."""
        return self.read(path)

    def check_samples_path(self, path: str, argument: str) -> None:
        """Nothing: ``path`` is a shard list (a brace pattern), whose files the reader checks one by one."""


# ----------------------------------------------------------------------------- views


def _image_geometry(data: object, views: str) -> tuple[int, int]:
    """``(channels, side)`` of the square images of ``data`` (its ``sample_shape``, or ``inputs (n, C, H, W)``)."""
    import torch

    shape = getattr(data, "sample_shape", None)
    inputs = getattr(data, "inputs", None)
    if shape is None and isinstance(inputs, torch.Tensor):
        shape = tuple(inputs.shape[1:])
    if shape is None or len(shape) != 3:
        raise ConfigError(f"{views} needs images (n, C, H, W), got data of sample shape {shape}")
    channels, height, width = shape
    if height != width:
        raise ConfigError(f"{views} needs square images, got {height}x{width}")
    return channels, height


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

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from contrastive_seq.views.base import TransformedViews
        from contrastive_seq.views.image import simclr_augmentation

        channels, size = _image_geometry(train, "views 'image_augmentation'")
        transform = simclr_augmentation(
            size=size,
            channels=channels,
            crop_scale=self.crop_scale,
            flip=self.flip,
            jitter_strength=self.jitter_strength,
            jitter_probability=self.jitter_probability,
            grayscale_probability=self.grayscale_probability,
            blur_probability=self.blur_probability,
            solarize_probability=self.solarize_probability,
        )
        return TransformedViews(transform)


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

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from contrastive_seq.views.image import byol_augmentations
        from contrastive_seq.views.multicrop import MultiCropViews

        channels, size = _image_geometry(train, "views 'byol_augmentation'")
        transforms = byol_augmentations(
            size,
            channels,
            self.crop_scale,
            self.flip,
            self.jitter_strength,
            self.jitter_probability,
            self.grayscale_probability,
            self.blur_probabilities,
            self.solarize_probabilities,
        )
        return MultiCropViews(transforms)


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

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from contrastive_seq.views.image import multicrop_augmentations
        from contrastive_seq.views.multicrop import MultiCropViews

        channels, size = _image_geometry(train, "views 'multicrop'")
        global_transforms, local_transform = multicrop_augmentations(
            size,
            self.local_size,
            channels,
            self.global_scale,
            self.local_scale,
            self.flip,
            self.jitter_strength,
            self.jitter_probability,
            self.grayscale_probability,
            self.global_blur_probabilities,
            self.global_solarize_probabilities,
            self.local_blur_probability,
        )
        return MultiCropViews(global_transforms, local_transform, self.n_local)


# ----------------------------------------------------------------------------- encoders


def _image_shape(sample_shape: tuple[int, ...], encoder: str) -> tuple[int, int]:
    """``(channels, side)`` of square image samples ``(C, H, W)``."""
    if len(sample_shape) != 3 or sample_shape[1] != sample_shape[2]:
        raise ConfigError(f"encoder '{encoder}' needs square images (C, H, W), got samples of shape {sample_shape}")
    return sample_shape[0], sample_shape[1]


@EncoderConfig.register("small_cnn")
@dataclass
class SmallCNNEncoder(EncoderConfig):
    """:class:`contrastive_seq.models.SmallConvNet`."""

    name: str = "small_cnn"
    widths: tuple[int, ...] = (32, 64, 128)

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        from contrastive_seq.models.small_cnn import SmallConvNet

        if len(sample_shape) != 3:
            raise ConfigError(f"encoder 'small_cnn' needs images (C, H, W), got samples of shape {sample_shape}")
        return SmallConvNet(in_channels=sample_shape[0], widths=self.widths)


@EncoderConfig.register("torchvision")
@dataclass
class TorchvisionEncoder(EncoderConfig):
    """A torchvision ResNet or ViT, or a timm model (``arch: "timm:<name>"``), by name
    (:func:`contrastive_seq.models.backbones.image_backbone`).

    Weights are random, or read from the local file ``weights_file``
    (``.safetensors``, or ``.pt`` / ``.pth`` / ``.bin`` read weights-only; the
    classifier's entries may be absent; shapes checked, naming the file).
    ``freeze``: the backbone takes no gradient (only the method's heads train).
    """

    weight_files: ClassVar[tuple[str, ...]] = ("weights_file",)
    name: str = "torchvision"
    arch: str = "resnet18"
    small_images: bool = False
    patch_size: int = 16
    weights_file: str | None = None
    freeze: bool = False

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        from contrastive_seq.models.backbones import image_backbone

        channels, size = _image_shape(sample_shape, "torchvision")
        backbone = image_backbone(
            self.arch,
            in_channels=channels,
            small_images=self.small_images,
            image_size=size if self.arch.startswith("vit_") else None,
            patch_size=self.patch_size,
            weights=self.weights_file,
        )
        return backbone.requires_grad_(not self.freeze)


# ----------------------------------------------------------------------------- methods


def _mlp(input_dim: int, hidden_dim: int, output_dim: int) -> nn.Module:
    from contrastive_seq.models.heads import MLPHead

    return MLPHead(input_dim, hidden_dim, output_dim)


def _augmentation_sampler(train: Any) -> Sampler:
    from contrastive_seq.sampling.augmentation import AugmentationSampler

    return AugmentationSampler(len(train))


@MethodConfig.register("simclr")
@dataclass
class SimCLRMethod(MethodConfig):
    """SimCLR: ``n_views`` augmentations per image, an MLP projection head, NT-Xent."""

    name: str = "simclr"
    temperature: float = 0.5
    n_views: int = 2
    projection_hidden_dim: int = 128
    projection_dim: int = 64

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.ntxent import NTXent
        from contrastive_seq.methods.simclr import SimCLR
        from contrastive_seq.sampling.augmentation import AugmentationSampler

        projection = _mlp(encoder.output_dim, self.projection_hidden_dim, self.projection_dim)
        method = SimCLR(encoder, projection, NTXent(temperature=self.temperature))
        return method, AugmentationSampler(len(train), n_views=self.n_views)


@dataclass
class MomentumConfig:
    """The momentum schedule shared by MoCo, BYOL and DINO (``momentum_steps: null``: ``train.max_steps``)."""

    base_momentum: float = 0.99
    final_momentum: float = 1.0
    momentum_steps: int | None = None

    def momentum(self) -> dict[str, object]:
        """The momentum keyword arguments of the methods' constructors."""
        return {
            "base_momentum": self.base_momentum,
            "final_momentum": self.final_momentum,
            "momentum_steps": self.momentum_steps,
        }


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.moco import MoCoLoss
        from contrastive_seq.methods.moco import MoCo

        projection = _mlp(encoder.output_dim, self.projection_hidden_dim, self.projection_dim)
        predictor = None
        if self.predictor:
            predictor = _mlp(self.projection_dim, self.predictor_hidden_dim, self.projection_dim)
        method = MoCo(
            encoder,
            projection,
            MoCoLoss(temperature=self.temperature),
            predictor=predictor,
            queue_size=self.queue_size,
            symmetric=self.symmetric,
            **self.momentum(),
        )
        return method, _augmentation_sampler(train)


@MethodConfig.register("byol")
@dataclass
class BYOLMethod(MethodConfig, MomentumConfig):
    """BYOL: projector and predictor MLPs, a momentum target."""

    name: str = "byol"
    base_momentum: float = 0.996
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    predictor_hidden_dim: int = 512

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.byol import BYOLLoss
        from contrastive_seq.methods.byol import BYOL

        projector = _mlp(encoder.output_dim, self.projection_hidden_dim, self.projection_dim)
        predictor = _mlp(self.projection_dim, self.predictor_hidden_dim, self.projection_dim)
        return BYOL(encoder, projector, predictor, BYOLLoss(), **self.momentum()), _augmentation_sampler(train)


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.dino import DINOLoss
        from contrastive_seq.methods.dino import DINO
        from contrastive_seq.models.dino_head import DINOHead

        head = DINOHead(
            encoder.output_dim,
            self.out_dim,
            self.hidden_dim,
            self.bottleneck_dim,
            self.num_layers,
            self.batch_norm,
            self.norm_last_layer,
        )
        loss = DINOLoss(
            self.out_dim,
            self.student_temperature,
            self.teacher_temperature,
            self.warmup_teacher_temperature,
            self.warmup_steps,
            self.center_momentum,
        )
        method = DINO(encoder, head, loss, **self.momentum(), freeze_last_layer_steps=self.freeze_last_layer_steps)
        return method, _augmentation_sampler(train)


@MethodConfig.register("supcon")
@dataclass
class SupConMethod(MethodConfig):
    """SupCon: positives are same-class images (``same_class``) or views of one labelled image (``augmentation``)."""

    name: str = "supcon"
    temperature: float = 0.1
    sampler: Literal["same_class", "augmentation"] = "same_class"
    projection_hidden_dim: int = 512
    projection_dim: int = 128

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.supcon import SupCon as SupConLoss
        from contrastive_seq.methods.supcon import SupCon
        from contrastive_seq.sampling.same_class import SameClassSampler

        if getattr(train, "labels", None) is None:
            raise ConfigError("method 'supcon' needs labelled training data (data with labels)")
        projection = _mlp(encoder.output_dim, self.projection_hidden_dim, self.projection_dim)
        method = SupCon(encoder, projection, SupConLoss(temperature=self.temperature))
        if self.sampler == "same_class":
            return method, SameClassSampler(train.labels)
        return method, _augmentation_sampler(train)


@MethodConfig.register("simsiam")
@dataclass
class SimSiamMethod(MethodConfig):
    """SimSiam: a 3-layer projector (BatchNorm on its output), a bottleneck predictor at a fixed rate."""

    name: str = "simsiam"
    projection_hidden_dim: int = 512
    projection_dim: int = 512
    predictor_hidden_dim: int = 128
    fixed_predictor_lr: bool = True

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.simsiam import SimSiamLoss
        from contrastive_seq.methods.simsiam import SimSiam
        from contrastive_seq.models.heads import MLPHead

        projector = MLPHead(
            encoder.output_dim, self.projection_hidden_dim, self.projection_dim, num_layers=3, output_batch_norm=True
        )
        predictor = _mlp(self.projection_dim, self.predictor_hidden_dim, self.projection_dim)
        method = SimSiam(encoder, projector, predictor, SimSiamLoss(), self.fixed_predictor_lr)
        return method, _augmentation_sampler(train)


@MethodConfig.register("barlow_twins")
@dataclass
class BarlowTwinsMethod(MethodConfig):
    """Barlow Twins: a 3-layer projector, the off-diagonal weight lambda."""

    name: str = "barlow_twins"
    projection_hidden_dim: int = 1024
    projection_dim: int = 1024
    lambda_offdiag: float = 5e-3

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.redundancy import BarlowTwinsLoss
        from contrastive_seq.methods.redundancy import BarlowTwins
        from contrastive_seq.models.heads import MLPHead

        projector = MLPHead(encoder.output_dim, self.projection_hidden_dim, self.projection_dim, num_layers=3)
        return BarlowTwins(encoder, projector, BarlowTwinsLoss(self.lambda_offdiag)), _augmentation_sampler(train)


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.redundancy import VICRegLoss
        from contrastive_seq.methods.redundancy import VICReg
        from contrastive_seq.models.heads import MLPHead

        projector = MLPHead(encoder.output_dim, self.projection_hidden_dim, self.projection_dim, num_layers=3)
        loss = VICRegLoss(self.invariance_weight, self.variance_weight, self.covariance_weight)
        return VICReg(encoder, projector, loss), _augmentation_sampler(train)


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.ntxent import NTXent
        from contrastive_seq.methods.nnclr import NNCLR
        from contrastive_seq.models.heads import MLPHead

        projector = MLPHead(encoder.output_dim, self.projection_hidden_dim, self.projection_dim, num_layers=3)
        predictor = _mlp(self.projection_dim, self.predictor_hidden_dim, self.projection_dim)
        method = NNCLR(encoder, projector, predictor, NTXent(temperature=self.temperature), self.support_size)
        return method, _augmentation_sampler(train)


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from torch import nn

        from contrastive_seq.losses.margin import MinedTripletMargin
        from contrastive_seq.methods.triplet import TripletMetric
        from contrastive_seq.sampling.same_class import SameClassSampler

        if getattr(train, "labels", None) is None:
            raise ConfigError("method 'triplet' needs labelled training data (data with labels)")
        head = nn.Identity() if self.projection_dim is None else nn.Linear(encoder.output_dim, self.projection_dim)
        loss = MinedTripletMargin(self.margin, self.distance, self.mining)
        return TripletMetric(encoder, head, loss, self.normalize), SameClassSampler(train.labels)


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.swav import SwAVLoss
        from contrastive_seq.methods.swav import SwAV
        from contrastive_seq.models.heads import Prototypes

        projector = _mlp(encoder.output_dim, self.projection_hidden_dim, self.projection_dim)
        loss = SwAVLoss(self.temperature, self.sinkhorn_iterations, self.epsilon)
        prototypes = Prototypes(self.projection_dim, self.prototypes)
        method = SwAV(encoder, projector, prototypes, loss, self.freeze_prototypes_steps, self.queue_size)
        return method, _augmentation_sampler(train)


# ----------------------------------------------------------------------------- evaluation


@EvaluationConfig.register("probes")
@dataclass
class ProbesEvaluation(EvaluationConfig):
    """kNN, few-label 1-NN and linear probes on the held-out labels, against raw inputs and the random encoder.

    kNN accuracy (with the embedding's collapse scores) is also logged every ``train.eval_every`` steps.
    """

    name: str = "probes"
    knn_k: int = 10
    labels_per_class: int = 5
    label_draws: int = 10
    linear_probe: bool = True

    def evaluator(self, experiment: Experiment) -> Evaluator:
        train, test = experiment.data.train, experiment.data.test
        for part, data in (("training", train), ("held-out", test)):
            if getattr(data, "labels", None) is None:
                raise MissingLabels(f"evaluation 'probes' needs labels on the {part} data; it has none")
        train, test = (data.load() if hasattr(data, "load") else data for data in (train, test))  # lazy files: decoded once
        return ProbesEvaluator(self, train, test, f"{experiment.config.method.name} (trained)")


class ProbesEvaluator(Evaluator):
    """:class:`ProbesEvaluation` on an image train / test pair.

    Under ``torchrun`` every rank embeds its share of the images and the kNN
    test rows, and the linear probe is fitted once, on rank 0
    (:mod:`~contrastive_seq.evaluation.distributed_embed`): the scores equal one process's.
    """

    across_ranks = True

    def __init__(self, config: ProbesEvaluation, train: ArrayDataset, test: ArrayDataset, trained_row: str):
        self.config, self.train, self.test, self.trained_row = config, train, test, trained_row

    def during_training(self, method: Method) -> dict[str, float]:
        from contrastive_seq.evaluation.distributed_embed import embed_across_ranks, knn_accuracy_across_ranks
        from contrastive_seq.training.monitor import collapse_scores

        train_x, test_x = embed_across_ranks(method, self.train.inputs), embed_across_ranks(method, self.test.inputs)
        knn = knn_accuracy_across_ranks(train_x, self.train.labels, test_x, self.test.labels, k=self.config.knn_k)
        return {"knn_accuracy": knn, **collapse_scores(test_x)}

    def scores(self, train_x: torch.Tensor, test_x: torch.Tensor) -> dict[str, float]:
        """kNN, few-label 1-NN and (optionally) linear-probe accuracy of one embedding ``(n, dim)`` of each part
        (the same on every rank; each rank classifies its share of the kNN test rows)."""
        from contrastive_seq.evaluation.distributed_embed import (
            knn_accuracy_across_ranks,
            linear_probe_accuracy_across_ranks,
        )
        from contrastive_seq.evaluation.probes import few_label_knn_accuracy

        config, train_y, test_y = self.config, self.train.labels, self.test.labels
        scores = {
            f"knn{config.knn_k}_accuracy": knn_accuracy_across_ranks(train_x, train_y, test_x, test_y, k=config.knn_k),
            f"1nn_{config.labels_per_class}_per_class_accuracy": few_label_knn_accuracy(
                train_x, train_y, test_x, test_y, config.labels_per_class, repeats=config.label_draws
            ),
        }
        if config.linear_probe:
            scores["linear_probe_accuracy"] = linear_probe_accuracy_across_ranks(train_x, train_y, test_x, test_y)
        return scores

    def results(self, trained: Method, untrained: Method) -> dict[str, dict[str, float]]:
        from contrastive_seq.evaluation.distributed_embed import embed_across_ranks

        def embedded(method: Method) -> dict[str, float]:
            return self.scores(embed_across_ranks(method, self.train.inputs), embed_across_ranks(method, self.test.inputs))

        return {
            "raw inputs": self.scores(self.train.inputs.flatten(1), self.test.inputs.flatten(1)),
            "random encoder": embedded(untrained),
            self.trained_row: embedded(trained),
        }
