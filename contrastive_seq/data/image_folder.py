"""Images in class folders (``root/<class>/<image>``), loaded into memory at one size.

The folder layout is torchvision's ``ImageFolder``: one sub-folder per class,
classes numbered in sorted order. Every image is decoded, converted to grey
or RGB, resized so its shorter side is ``image_size`` and centre-cropped to a
square, so a dataset of a few tens of thousands of small images fits in
memory as one tensor (the samplers and probes index into it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from contrastive_seq.data.arrays import ArrayDataset

_READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}


def load_image_folder(root: str | Path, image_size: int, channels: int = 3) -> tuple[ArrayDataset, list[str]]:
    """All images under ``root/<class>/`` as ``(n, channels, image_size, image_size)`` float32 in [0, 1].

    Args:
        root: a folder with one sub-folder of images per class
            (extensions: ``torchvision.datasets.folder.IMG_EXTENSIONS``).
        image_size: side of the square images, in pixels.
        channels: 1 (grey) or 3 (RGB); images are converted on decoding.

    Returns:
        ``(dataset, classes)``: labels ``(n,)`` index into the sorted class names.

    Raises:
        FileNotFoundError: naming ``root`` when it is not a folder.
        ValueError: for a bad ``channels`` or ``image_size``, or a folder without class sub-folders or images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a folder")
    if channels not in _READ_MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    try:
        classes, class_to_index = find_classes(root)
        samples = make_dataset(root, class_to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:  # torchvision's message for no class folders / no images
        raise ValueError(f"image folder {root}: {error}") from error
    resize = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])
    images = torch.stack(
        [resize(decode_image(path, mode=_READ_MODES[channels])) for path, _ in samples]
    )
    labels = torch.tensor([label for _, label in samples])
    return ArrayDataset(images.float() / 255.0, labels), classes
