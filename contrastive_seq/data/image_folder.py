"""Image files in a folder, decoded on access: class folders (labelled) or a plain folder (unlabelled).

:func:`load_images` indexes the files and checks each one's header
(``PIL.Image.verify``) without decoding it, and returns an
:class:`ImageFiles`: indexing it decodes only the images a batch asks for
(in the DataLoader workers, where the views run), converts them to grey or
RGB, resizes the shorter side to ``image_size`` and centre-crops a square.
Nothing is held in memory but the paths.

``labels="folders"`` reads torchvision's ``ImageFolder`` layout
(``root/<class>/<image>``, classes numbered in sorted order);
``labels=None`` takes every image under ``root``, recursively, without labels.
A file that cannot be decoded is an error naming it (``on_corrupt="error"``)
or is left out with one warning counting such files (``on_corrupt="skip"``).

:func:`load_image_folder` is the in-memory variant: every image decoded
once into an :class:`~contrastive_seq.data.arrays.ArrayDataset`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension, make_dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from contrastive_seq.data.arrays import ArrayDataset, random_split
from contrastive_seq.user_warnings import warn_at_caller

_READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}
CORRUPT_POLICIES = ("error", "skip")
LABEL_SOURCES = ("folders",)


def check_geometry(image_size: int, channels: int) -> None:
    """Require ``image_size`` a positive int and ``channels`` 1 or 3."""
    if channels not in _READ_MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


class ImageFiles:
    """Square images decoded from their files on access, with optional integer labels.

    Args:
        paths: the image files.
        image_size: side of the square images, in pixels.
        channels: 1 (grey) or 3 (RGB).
        labels: optional ``(n,)`` integer class of each image.
        classes: the class names ``labels`` index (with ``labels``).

    Indexing with an index tensor of any shape gives ``index.shape + (channels, image_size, image_size)``
    float32 in [0, 1], decoding each distinct image once.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        image_size: int,
        channels: int = 3,
        labels: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
    ):
        check_geometry(image_size, channels)
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("paths must name at least one image file, got none")
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.shape != (len(self.paths),) or labels.dtype.is_floating_point:
                shape = tuple(labels.shape)
                raise ValueError(f"labels must be ({len(self.paths)},) integers, got {labels.dtype} {shape}")
            labels = labels.long()
        self.image_size = image_size
        self.channels = channels
        self.labels = labels
        self.classes = None if classes is None else list(classes)
        self._resize = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        labelled = f"{len(self.classes)} classes" if self.classes else "unlabelled"
        return f"ImageFiles({len(self)} images, {labelled}, {self.channels}x{self.image_size}x{self.image_size})"

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(channels, image_size, image_size)``."""
        return self.channels, self.image_size, self.image_size

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as ``(channels, image_size, image_size)`` float32 in [0, 1].

        Raises:
            ValueError naming the file when it cannot be decoded.
        """
        path = self.paths[i]
        try:
            image = decode_image(str(path), mode=_READ_MODES[self.channels])
        except (RuntimeError, OSError) as error:
            raise ValueError(f"image file {path} cannot be decoded: {error}") from error
        return self._resize(image).float() / 255.0

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Images at ``index`` (any shape, or a slice): ``index.shape + (channels, image_size, image_size)``."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.long)
        unique, position = torch.unique(index, return_inverse=True)
        decoded = torch.stack([self.decode(i) for i in unique.tolist()])
        return decoded[position]

    def subset(self, rows: torch.Tensor) -> ImageFiles:
        """The images at ``rows (k,)``, as a new :class:`ImageFiles`."""
        rows = torch.as_tensor(rows, dtype=torch.long).tolist()
        labels = None if self.labels is None else self.labels[rows]
        return ImageFiles([self.paths[i] for i in rows], self.image_size, self.channels, labels, self.classes)

    def split(self, fraction: float, seed: int = 0) -> tuple[ImageFiles, ImageFiles]:
        """A seeded random split into ``(1 - fraction, fraction)`` parts, as :meth:`ArrayDataset.split`."""
        first, second = random_split(len(self), fraction, seed)
        return self.subset(first), self.subset(second)

    def load(self) -> ArrayDataset:
        """Every image decoded into memory: ``ArrayDataset(inputs (n, C, S, S), labels)``."""
        return ArrayDataset(self[torch.arange(len(self))], self.labels)


def _readable(path: Path) -> str | None:
    """``None`` when PIL reads the header and checks the file's structure, else the reason it cannot."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds for damaged files
        return f"{type(error).__name__}: {error}"
    return None


def load_images(
    path: str | os.PathLike,
    image_size: int,
    channels: int = 3,
    labels: str | None = "folders",
    on_corrupt: str = "error",
    extensions: Sequence[str] = IMG_EXTENSIONS,
) -> ImageFiles:
    """The images of a folder, indexed and checked, decoded on access.

    Args:
        path: the folder.
        image_size: side of the square images, in pixels.
        channels: 1 (grey) or 3 (RGB); images are converted on decoding.
        labels: ``"folders"``: ``path/<class>/<image>``, classes in sorted order;
            ``None``: every image under ``path`` (recursive), unlabelled.
        on_corrupt: ``"error"``: a file that cannot be read raises naming it;
            ``"skip"``: such files are left out, with one warning counting them.
        extensions: the image suffixes looked for (default torchvision's ``IMG_EXTENSIONS``).

    Returns:
        an :class:`ImageFiles` (with ``labels`` and ``classes`` for ``labels="folders"``).

    Raises:
        FileNotFoundError naming a missing folder; NotADirectoryError when
        ``path`` is a file; ValueError naming the folder when it holds no
        class folders or no images, or naming a damaged file.
    """
    root = Path(path)
    if root.is_file():
        raise NotADirectoryError(f"{root} is a file; an image folder is expected")
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a folder")
    check_geometry(image_size, channels)
    if on_corrupt not in CORRUPT_POLICIES:
        raise ValueError(f"on_corrupt must be one of {CORRUPT_POLICIES}, got {on_corrupt!r}")
    if labels not in LABEL_SOURCES + (None,):
        raise ValueError(f"labels must be 'folders' (one folder per class) or None (unlabelled), got {labels!r}")
    extensions = tuple(extensions)
    classes = None
    if labels == "folders":
        try:
            classes, class_to_index = find_classes(root)
            samples = make_dataset(root, class_to_index, extensions=extensions)
        except FileNotFoundError as error:  # torchvision's message for no class folders / no images
            raise ValueError(f"image folder {root}: {error}") from error
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and has_file_allowed_extension(p.name, extensions))
        if not files:
            raise ValueError(f"image folder {root} holds no image file (searched recursively for {extensions})")
        samples = [(str(p), -1) for p in files]
    damaged = [(p, reason) for p, _ in samples if (reason := _readable(Path(p))) is not None]
    if damaged:
        first, reason = damaged[0]
        message = f"{len(damaged)} of {len(samples)} image files under {root} cannot be read (first: {first}: {reason})"
        if on_corrupt == "error":
            raise ValueError(message + "; remove them or pass on_corrupt='skip'")
        warn_at_caller(message + "; they are skipped")
        bad = {p for p, _ in damaged}
        samples = [sample for sample in samples if sample[0] not in bad]
        if not samples:
            raise ValueError(f"image folder {root}: no readable image is left")
    label_tensor = None if classes is None else torch.tensor([label for _, label in samples])
    return ImageFiles([p for p, _ in samples], image_size, channels, label_tensor, classes)


def load_image_folder(root: str | Path, image_size: int, channels: int = 3) -> tuple[ArrayDataset, list[str]]:
    """All images under ``root/<class>/`` decoded into memory: ``(n, channels, size, size)`` float32 in [0, 1].

    The in-memory form of :func:`load_images` with ``labels="folders"``, for
    data small enough to hold whole; errors as there.

    Returns:
        ``(dataset, classes)``: labels ``(n,)`` index into the sorted class names.
    """
    files = load_images(root, image_size, channels)
    return files.load(), files.classes
