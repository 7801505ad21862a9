"""torchvision and timm image backbones by name, without their classifier, random or from a local weights file.

``image_backbone("resnet18", in_channels=1, small_images=True)`` is a ResNet-18
for 28x28 grey images; ``image_backbone("vit_tiny", image_size=32, patch_size=4)``
a ViT-Tiny on 8x8 patches of 4 pixels; ``image_backbone("timm:convnext_atto",
weights="convnext_atto.safetensors")`` a timm model with the weights of a local
file. Weights are never downloaded: they are random, or read from a local file
(:mod:`contrastive_seq.models.pretrained`: weights-only, shapes checked). Every
backbone maps images ``(N, C, H, W)`` to features ``(N, output_dim)`` and
exposes ``output_dim`` and ``in_channels``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import torchvision
from einops import rearrange
from torch import nn
from torchvision.models import ResNet, VisionTransformer

from contrastive_seq.models.pretrained import load_weights, load_weights_file, read_weights

#: ViT sizes built from torchvision's VisionTransformer: (layers, heads, hidden_dim, mlp_dim), as in DeiT
CUSTOM_VITS = {"vit_tiny": (12, 3, 192, 768), "vit_small": (12, 6, 384, 1536)}
#: name prefixes of torchvision's ResNet family
RESNET_PREFIXES = ("resnet", "wide_resnet", "resnext")
#: names starting with this are timm models (``"timm:resnet50"``)
TIMM_PREFIX = "timm:"
#: classifier entries a torchvision weights file may lack (a headless backbone's weights)
TORCHVISION_HEADS = ("fc.", "heads.")


def _check_images(images: torch.Tensor, in_channels: int) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != in_channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, {in_channels}, H, W), got {shape}")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet up to its global average pool: ``(N, C, H, W) -> (N, output_dim)``.

    Args:
        network: the ResNet (its ``fc`` is replaced by the identity).
        in_channels: image channels C; the stem convolution is rebuilt when C != 3.
        small_images: replace the 7x7 stride-2 stem and its max-pool by a 3x3
            stride-1 convolution (for 32x32 and smaller images, as in SimCLR's CIFAR runs).
    """

    def __init__(self, network: ResNet, in_channels: int = 3, small_images: bool = False):
        super().__init__()
        stem = network.conv1
        if small_images:
            network.conv1 = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
            network.maxpool = nn.Identity()
        elif in_channels != stem.in_channels:
            network.conv1 = nn.Conv2d(in_channels, stem.out_channels, 7, stride=2, padding=3, bias=False)
        if network.conv1 is not stem:  # the initialisation torchvision gives its convolutions
            nn.init.kaiming_normal_(network.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.output_dim = network.fc.in_features
        network.fc = nn.Identity()
        self.network = network
        self.in_channels = in_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, output_dim)``."""
        _check_images(images, self.in_channels)
        return self.network(images)


class ViTBackbone(nn.Module):
    """A torchvision VisionTransformer's class token after the last block: ``(N, C, H, W) -> (N, hidden_dim)``.

    Images of another size than the one it was built for (DINO's local crops)
    get the position embedding interpolated bicubically to their grid of
    patches; H and W must be multiples of the patch size.

    Args:
        network: the VisionTransformer (its classification ``heads`` are dropped).
        in_channels: image channels C; the patch projection is rebuilt when C != 3.
    """

    def __init__(self, network: VisionTransformer, in_channels: int = 3):
        super().__init__()
        if in_channels != network.conv_proj.in_channels:
            old = network.conv_proj
            network.conv_proj = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride)
            fan_in = in_channels * old.kernel_size[0] * old.kernel_size[1]  # torchvision's initialisation
            nn.init.trunc_normal_(network.conv_proj.weight, std=(1 / fan_in) ** 0.5)
            nn.init.zeros_(network.conv_proj.bias)
        network.heads = nn.Identity()
        self.network = network
        self.in_channels = in_channels
        self.patch_size = network.patch_size
        self.output_dim = network.hidden_dim

    def position_embedding(self, rows: int, columns: int) -> torch.Tensor:
        """``(1, 1 + rows * columns, hidden_dim)``: the class token's and the patch grid's position embedding."""
        embedding = self.network.encoder.pos_embedding
        side = self.network.image_size // self.patch_size
        if (rows, columns) == (side, side):
            return embedding
        grid = rearrange(embedding[:, 1:], "1 (h w) d -> 1 d h w", h=side)
        grid = F.interpolate(grid, size=(rows, columns), mode="bicubic", align_corners=False)
        return torch.cat([embedding[:, :1], rearrange(grid, "1 d h w -> 1 (h w) d")], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, output_dim)``, H and W multiples of ``patch_size``."""
        _check_images(images, self.in_channels)
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"images must have height and width that are multiples of the patch size {self.patch_size}, "
                f"got {tuple(images.shape)}"
            )
        patches = self.network.conv_proj(images)  # (N, D, rows, columns)
        tokens = rearrange(patches, "n d h w -> n (h w) d")
        class_token = self.network.class_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([class_token, tokens], dim=1) + self.position_embedding(*patches.shape[-2:])
        encoder = self.network.encoder
        return encoder.ln(encoder.layers(encoder.dropout(tokens)))[:, 0]


class TimmBackbone(nn.Module):
    """A timm model without its classifier (``reset_classifier(0)``): ``(N, C, H, W) -> (N, output_dim)``.

    Args:
        name: a timm model name (``timm.list_models()``).
        in_channels: image channels C (timm's ``in_chans``).
        image_size: the image side, for models that fix it (ViTs); ``None``: timm's default.
        weights: an optional local weights file of the model (classifier
            included or not). With ``in_channels`` other than 3, a file's
            3-channel stem is adapted by timm's ``adapt_input_conv``.
    """

    def __init__(
        self, name: str, in_channels: int = 3, image_size: int | None = None, weights: str | os.PathLike | None = None
    ):
        super().__init__()
        import timm
        from timm.models import adapt_input_conv

        if name not in timm.list_models():
            raise ValueError(f"name {TIMM_PREFIX}{name} is not a timm model; see timm.list_models()")
        options = {} if image_size is None else {"img_size": image_size}
        network = timm.create_model(name, pretrained=False, in_chans=in_channels, **options)
        if weights is not None:
            state = read_weights(weights)
            stem = f"{network.pretrained_cfg.get('first_conv')}.weight"
            if in_channels != 3 and stem in state and state[stem].shape[1] == 3:
                state[stem] = adapt_input_conv(in_channels, state[stem])
            load_weights(network, state, weights, ignore_missing=(f"{network.pretrained_cfg.get('classifier')}.",))
        network.reset_classifier(0)
        self.network = network
        self.in_channels = in_channels
        self.output_dim = network.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W) -> (N, output_dim)``."""
        _check_images(images, self.in_channels)
        return self.network(images)


def image_backbone(
    name: str,
    in_channels: int = 3,
    small_images: bool = False,
    image_size: int | None = None,
    patch_size: int = 16,
    weights: str | os.PathLike | None = None,
) -> ResNetBackbone | ViTBackbone | TimmBackbone:
    """A torchvision or timm backbone by name, classifier removed, random or with the weights of a local file.

    Args:
        name: a torchvision ResNet (``"resnet18"``, ``"resnet50"``, ``"wide_resnet50_2"``,
            ``"resnext50_32x4d"``, ...), a torchvision ViT (``"vit_b_16"``, ``"vit_b_32"``,
            ``"vit_l_16"``, ...), a ViT of :data:`CUSTOM_VITS` (``"vit_tiny"``, ``"vit_small"``),
            or ``"timm:<name>"``, any timm model (:class:`TimmBackbone`).
        in_channels: image channels (1 for grey images: the first layer takes one channel).
        small_images: ResNets only: the 3x3 stride-1 stem without max-pool.
        image_size: ViTs only, required: the image side the position embedding is made for.
        patch_size: custom ViTs only: patch side in pixels (torchvision's ViTs fix theirs in the name).
        weights: an optional local weights file (``.safetensors``, or ``.pt`` / ``.pth`` / ``.bin``
            read weights-only) of the torchvision or timm model ``name`` names, for example
            ``torchvision.models.resnet18(weights=...).state_dict()`` saved once; the classifier's
            entries may be absent. Loaded before the stem is rebuilt for ``in_channels`` or
            ``small_images`` (torchvision; a rebuilt stem starts random). Fine-tuned by default;
            lock it in a tower (:class:`~contrastive_seq.models.clip_towers.Tower`) or by ``requires_grad_(False)``.

    Returns:
        a :class:`ResNetBackbone`, :class:`ViTBackbone` or :class:`TimmBackbone`,
        images ``(N, C, H, W) -> (N, output_dim)``.

    Raises:
        ValueError: naming the argument, for an unknown name or options that do not apply to it;
            naming the file and the first mismatched parameter, for weights that do not fit.
        FileNotFoundError: a ``weights`` file that does not exist.
    """
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if name.startswith(TIMM_PREFIX):
        if small_images or patch_size != 16:
            raise ValueError(f"small_images and patch_size apply to torchvision backbones, not to {name!r}")
        return TimmBackbone(name[len(TIMM_PREFIX):], in_channels, image_size, weights)
    is_vit = name in CUSTOM_VITS or name.startswith("vit_")
    if is_vit:
        if small_images:
            raise ValueError(
                f"small_images is a ResNet stem option; for the ViT {name!r} choose a small patch_size "
                f"with one of {sorted(CUSTOM_VITS)}"
            )
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int for the ViT {name!r}, got {image_size!r}")
    elif image_size is not None:
        raise ValueError(f"image_size applies to ViTs only, not to {name!r}")
    if name in CUSTOM_VITS:
        if weights is not None:
            raise ValueError(f"weights: {name!r} is built here, not a torchvision model; there are no weights files for it")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        layers, heads, hidden, mlp = CUSTOM_VITS[name]
        return ViTBackbone(VisionTransformer(image_size, patch_size, layers, heads, hidden, mlp), in_channels)
    if patch_size != 16:
        raise ValueError(f"patch_size applies to {sorted(CUSTOM_VITS)} only, not to {name!r}")
    if name not in torchvision.models.list_models(module=torchvision.models) or not (
        is_vit or name.startswith(RESNET_PREFIXES)
    ):
        raise ValueError(f"name must be a torchvision ResNet or ViT or one of {sorted(CUSTOM_VITS)}, got {name!r}")
    network = torchvision.models.get_model(name, weights=None, **({"image_size": image_size} if is_vit else {}))
    if weights is not None:
        load_weights_file(network, weights, ignore_missing=TORCHVISION_HEADS)
    if is_vit:
        return ViTBackbone(network, in_channels)
    return ResNetBackbone(network, in_channels, small_images)


def encode_views(network: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Apply ``network`` to each of V views of N images: ``(V, N, C, H, W) -> (V, N, d)``.

    One call per view: BatchNorm normalises each view over its own N images
    (as BYOL and MoCo do), and the activations are those of N images, not V·N,
    which on the CPU keeps a step about 8% faster than one joint batch
    (``benchmarks/lightly_side_by_side.py``).
    """
    return torch.stack([network(view) for view in views])
