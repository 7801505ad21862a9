"""Images stored in HDF5: a dataset ``images (n, C, H, W)`` and an optional ``labels (n,)``.

``uint8`` images are read as values / 255, floating images as they are (they
must lie in [0, 1]). :func:`save_hdf5_images` writes this layout.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.hdf5 import (
    create_checked_dataset,
    member,
    open_for_reading,
    read_dataset,
    write_hdf5_atomically,
)


def save_hdf5_images(
    path: str | Path, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None = None
) -> None:
    """Write ``images (n, C, H, W)`` (uint8, or float in [0, 1]) and optional integer ``labels (n,)`` to ``path``, atomically."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, channels, height, width), got {images.shape}")

    def fill(file: h5py.File) -> None:
        create_checked_dataset(file, "images", data=images, chunks=(1, *images.shape[1:]))
        if labels is not None:
            create_checked_dataset(file, "labels", data=np.asarray(labels))

    write_hdf5_atomically(path, fill)


def load_hdf5_images(path: str | Path, images_key: str = "images", labels_key: str | None = "labels") -> ArrayDataset:
    """Read images ``(n, C, H, W)`` as float32 in [0, 1], with labels ``(n,)`` when ``labels_key`` is in the file.

    Args:
        path: the HDF5 file.
        images_key: name of the image dataset.
        labels_key: name of the label dataset; ``None`` reads no labels.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        ValueError: naming the file and dataset, for a missing image dataset,
            images not of rank 4, floating images outside [0, 1] or non-integer labels.
    """
    path = Path(path)
    with open_for_reading(path) as file:
        images = read_dataset(file, images_key, str(path))
        has_labels = labels_key is not None and member(file, labels_key, str(path)) is not None
        labels = read_dataset(file, labels_key, str(path), ndim=1) if has_labels else None
    if images.ndim != 4:
        raise ValueError(f"{path}:{images_key} must have shape (n, channels, height, width), got {images.shape}")
    if images.dtype == np.uint8:
        inputs = torch.from_numpy(images).float() / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        inputs = torch.from_numpy(images.astype(np.float32))
        if not torch.isfinite(inputs).all() or inputs.min() < 0 or inputs.max() > 1:
            raise ValueError(f"{path}:{images_key} holds floating images, which must be finite and lie in [0, 1]")
    else:
        raise ValueError(f"{path}:{images_key} must hold uint8 or floating images, got dtype {images.dtype}")
    if labels is not None and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}:{labels_key} must hold integer labels, got dtype {labels.dtype}")
    return ArrayDataset(inputs, None if labels is None else torch.from_numpy(labels.astype(np.int64)))
