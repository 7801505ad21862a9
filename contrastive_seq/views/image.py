"""Image augmentation recipes on torchvision.transforms.v2, sized by parameters.

The same recipe serves 8x8 grey digits and 224x224 colour photographs:
sizes and strengths are arguments, and colour-only steps are left out for
grey images. Every transform maps one image tensor ``(C, H, W)`` in [0, 1] to
one view ``(C, size, size)``.

- :func:`simclr_augmentation`: SimCLR's recipe (Chen et al. 2020);
- :func:`byol_augmentations`: BYOL's two asymmetric recipes (Grill et al. 2020);
- :func:`multicrop_augmentations`: DINO's two global and one local recipe
  (Caron et al. 2021), the local one at its own, smaller resolution.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

#: BYOL's colour jitter (brightness, contrast, saturation, hue), also used by DINO
BYOL_JITTER = (0.4, 0.4, 0.2, 0.1)


def _byol_jitter(strength: float) -> tuple[float, float, float, float]:
    """:data:`BYOL_JITTER` scaled by ``strength``."""
    brightness, contrast, saturation, hue = (strength * value for value in BYOL_JITTER)
    return brightness, contrast, saturation, hue


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (pixels), got {value!r}")


def _check_scale(name: str, scale: tuple[float, float]) -> None:
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {scale}")


def augmentation_recipe(
    size: int,
    channels: int,
    crop_scale: tuple[float, float],
    flip: bool,
    jitter: tuple[float, float, float, float],
    jitter_probability: float,
    grayscale_probability: float,
    blur_probability: float,
    solarize_probability: float,
) -> v2.Compose:
    """The steps every recipe here shares, for one image ``(C, H, W)`` in [0, 1] -> ``(C, size, size)``.

    Random resized crop to ``size`` with area fraction in ``crop_scale``,
    horizontal flip, colour jitter ``(brightness, contrast, saturation, hue)``
    with probability ``jitter_probability`` (brightness and contrast only for
    grey images), random grayscale (colour only), Gaussian blur with a kernel of
    about a tenth of the image (odd, >= 3; sigma in [0.1, 2]) and solarisation
    at 0.5. Steps with probability 0 are left out.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    _check_size("size", size)
    _check_scale("crop_scale", crop_scale)
    for name, value in (
        ("jitter_probability", jitter_probability),
        ("grayscale_probability", grayscale_probability),
        ("blur_probability", blur_probability),
        ("solarize_probability", solarize_probability),
    ):
        _check_probability(name, value)
    brightness, contrast, saturation, hue = jitter
    if channels == 3:
        color_jitter = v2.ColorJitter(brightness, contrast, saturation, hue)
    else:
        color_jitter = v2.ColorJitter(brightness=brightness, contrast=contrast)
    steps: list[v2.Transform] = [v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if jitter_probability > 0:
        steps.append(v2.RandomApply([color_jitter], p=jitter_probability))
    if channels == 3 and grayscale_probability > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_probability))
    if blur_probability > 0:
        kernel = max(3, (size // 10) | 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_probability))
    if solarize_probability > 0:
        steps.append(v2.RandomSolarize(threshold=0.5, p=solarize_probability))
    return v2.Compose(steps)


def simclr_augmentation(
    size: int,
    channels: int = 3,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    jitter_strength: float = 1.0,
    jitter_probability: float = 0.8,
    grayscale_probability: float = 0.2,
    blur_probability: float = 0.5,
    solarize_probability: float = 0.0,
) -> v2.Compose:
    """The SimCLR recipe (Chen et al. 2020) for one image tensor ``(C, H, W)`` in [0, 1].

    Random resized crop to ``size``, horizontal flip, colour jitter (brightness,
    contrast, saturation 0.8·s, hue 0.2·s; brightness and contrast only for
    grey images), random grayscale (colour only), Gaussian blur with a kernel
    of about a tenth of the image (odd, >= 3), and optional solarisation.
    """
    s = jitter_strength
    return augmentation_recipe(
        size,
        channels,
        crop_scale,
        flip,
        (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        jitter_probability,
        grayscale_probability,
        blur_probability,
        solarize_probability,
    )


def byol_augmentations(
    size: int,
    channels: int = 3,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    jitter_strength: float = 1.0,
    jitter_probability: float = 0.8,
    grayscale_probability: float = 0.2,
    blur_probabilities: tuple[float, float] = (1.0, 0.1),
    solarize_probabilities: tuple[float, float] = (0.0, 0.2),
) -> tuple[v2.Compose, v2.Compose]:
    """BYOL's two asymmetric recipes (Grill et al. 2020, table 6), one per view.

    Both: random resized crop to ``size``, flip, colour jitter (brightness 0.4·s,
    contrast 0.4·s, saturation 0.2·s, hue 0.1·s) with probability 0.8, grayscale
    0.2. They differ in blur (always in the first view, rarely in the second)
    and solarisation (only in the second); ``blur_probabilities`` and
    ``solarize_probabilities`` give ``(first view, second view)``.

    Returns:
        ``(first, second)``: transforms ``(C, H, W) -> (C, size, size)``.
    """
    jitter = _byol_jitter(jitter_strength)
    for name, pair in (("blur_probabilities", blur_probabilities), ("solarize_probabilities", solarize_probabilities)):
        if len(pair) != 2:
            raise ValueError(f"{name} must hold two probabilities (first view, second view), got {pair!r}")
    first, second = (
        augmentation_recipe(
            size, channels, crop_scale, flip, jitter, jitter_probability, grayscale_probability, blur, solarize
        )
        for blur, solarize in zip(blur_probabilities, solarize_probabilities)
    )
    return first, second


def multicrop_augmentations(
    global_size: int,
    local_size: int,
    channels: int = 3,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    flip: bool = True,
    jitter_strength: float = 1.0,
    jitter_probability: float = 0.8,
    grayscale_probability: float = 0.2,
    global_blur_probabilities: tuple[float, float] = (1.0, 0.1),
    global_solarize_probabilities: tuple[float, float] = (0.0, 0.2),
    local_blur_probability: float = 0.5,
) -> tuple[tuple[v2.Compose, v2.Compose], v2.Compose]:
    """DINO's multi-crop recipes (Caron et al. 2021): two global crops and one recipe for every local crop.

    The global crops cover ``global_scale`` of the image at ``global_size``
    pixels and follow BYOL's asymmetric recipes (:func:`byol_augmentations`);
    the local crops cover ``local_scale`` at the smaller ``local_size``, with
    blur probability ``local_blur_probability`` and no solarisation.
    (DINO on ImageNet: 224 and 96 pixels, scales (0.4, 1) and (0.05, 0.4).)

    Returns:
        ``((first_global, second_global), local)``: transforms ``(C, H, W) ->
        (C, global_size, global_size)`` and ``(C, H, W) -> (C, local_size, local_size)``.
    """
    _check_size("local_size", local_size)
    if local_size > global_size:
        raise ValueError(f"local_size must not exceed global_size={global_size}, got {local_size}")
    global_crops = byol_augmentations(
        global_size,
        channels,
        global_scale,
        flip,
        jitter_strength,
        jitter_probability,
        grayscale_probability,
        global_blur_probabilities,
        global_solarize_probabilities,
    )
    local = augmentation_recipe(
        local_size,
        channels,
        local_scale,
        flip,
        _byol_jitter(jitter_strength),
        jitter_probability,
        grayscale_probability,
        local_blur_probability,
        0.0,
    )
    return global_crops, local


def check_image_views(
    name: str, views: object, min_views: int = 1, min_samples: int = 1, max_views: int | None = None
) -> torch.Tensor:
    """Require floating image views ``(V, N, C, H, W)`` with ``min_views <= V <= max_views`` and ``N >= min_samples``.

    ``min_samples`` counts this rank's images; pass 2 where a loss needs
    in-batch negatives and runs on one process (on several, each rank's image
    has the other ranks' images as negatives).
    """
    if not isinstance(views, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of image views, got {type(views).__name__}")
    if not views.is_floating_point():
        raise TypeError(f"{name} must hold floating-point images, got dtype {views.dtype}")
    if views.dim() != 5:
        raise ValueError(f"{name} must have shape (views, batch, channels, height, width), got {tuple(views.shape)}")
    if views.shape[0] < min_views:
        raise ValueError(f"{name} must hold at least {min_views} views (V, N, C, H, W), got {tuple(views.shape)}")
    if max_views is not None and views.shape[0] > max_views:
        raise ValueError(f"{name} must hold at most {max_views} views (V, N, C, H, W), got {tuple(views.shape)}")
    if views.shape[1] < min_samples:
        raise ValueError(
            f"{name} must hold at least {min_samples} images per view (V, N >= {min_samples}, C, H, W): "
            f"in-batch negatives need another image in the batch, got {tuple(views.shape)}"
        )
    return views
