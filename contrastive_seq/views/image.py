"""Image augmentation recipes on torchvision.transforms.v2, sized by parameters.

The same recipe serves 8x8 grey digits and 224x224 colour photographs:
sizes and strengths are arguments, and colour-only steps are left out for
grey images.
"""

from __future__ import annotations

from torchvision.transforms import v2


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
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
    s = jitter_strength
    if channels == 3:
        jitter = v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    else:
        jitter = v2.ColorJitter(brightness=0.8 * s, contrast=0.8 * s)
    kernel = max(3, (size // 10) | 1)
    steps: list[v2.Transform] = [v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.RandomApply([jitter], p=jitter_probability))
    if channels == 3 and grayscale_probability > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_probability))
    if blur_probability > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_probability))
    if solarize_probability > 0:
        steps.append(v2.RandomSolarize(threshold=0.5, p=solarize_probability))
    return v2.Compose(steps)
