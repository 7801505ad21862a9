"""Fashion-MNIST (Xiao et al. 2017) from the IDX files of Debian's ``dataset-fashion-mnist`` package.

60,000 training and 10,000 test images, grey 28x28, 10 classes of clothing.
Nothing is downloaded: the files come with ``apt-get install dataset-fashion-mnist``.
Importing this module imports no torch (configs default to :data:`DEFAULT_ROOT`).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from contrastive_seq.data.arrays import ArrayDataset

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
APT_PACKAGE = "dataset-fashion-mnist"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILE_PREFIX = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


def read_idx(path: str | Path, magic: int, dims: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes (LeCun's MNIST format).

    The header is a big-endian int32 ``magic`` (``0x0000080X``: unsigned bytes,
    X dimensions) followed by X big-endian int32 sizes; the data follow.

    Args:
        path: the ``.gz`` file.
        magic: the expected magic number (2051 for images, 2049 for labels).
        dims: the expected number of dimensions (3 for images, 1 for labels).

    Returns:
        ``uint8`` array of the sizes in the header, e.g. ``(n, 28, 28)``.

    Raises:
        ValueError: naming the file, when the header or the size does not fit.
    """
    with gzip.open(path, "rb") as file:
        raw = file.read()
    header_bytes = 4 * (1 + dims)
    if len(raw) < header_bytes:
        raise ValueError(f"{path} is too short for an IDX header of {dims} dimensions ({len(raw)} bytes)")
    header = np.frombuffer(raw[:header_bytes], dtype=">i4")
    if int(header[0]) != magic:
        raise ValueError(f"{path} has IDX magic number {int(header[0])}, expected {magic}")
    shape = tuple(int(size) for size in header[1:])
    if len(raw) - header_bytes != int(np.prod(shape)):
        raise ValueError(
            f"{path} holds {len(raw) - header_bytes} data bytes, but its header announces shape {shape}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes).reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path = DEFAULT_ROOT) -> ArrayDataset:
    """One split of Fashion-MNIST as images ``(n, 1, 28, 28)`` float32 in [0, 1] with labels ``(n,)``.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.

    Raises:
        ValueError: for another ``split``, or files whose header or size is wrong.
        FileNotFoundError: naming the missing file and the Debian package that provides it.
    """
    import torch

    from contrastive_seq.data.arrays import ArrayDataset

    if split not in _FILE_PREFIX:
        raise ValueError(f"split must be one of {tuple(_FILE_PREFIX)}, got {split!r}")
    root = Path(root)
    prefix = _FILE_PREFIX[split]
    paths = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {path} is missing; install it with "
                f"`apt-get install {APT_PACKAGE}` (Debian), or pass root=<folder with the IDX .gz files>"
            )
    images = read_idx(paths[0], _IMAGE_MAGIC, dims=3)
    labels = read_idx(paths[1], _LABEL_MAGIC, dims=1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{paths[1]} has {labels.shape[0]} labels for the {images.shape[0]} images of {paths[0]}")
    inputs = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return ArrayDataset(inputs, torch.from_numpy(labels.astype(np.int64)))
