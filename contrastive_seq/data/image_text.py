"""Image-caption datasets: images with one or more captions each, from CSV / JSON lines or HDF5.

Every loader checks the whole input before returning (missing image files,
images without captions, captions that point at no image, labels that do not
match), so a bad row is an error naming it at load time, not a crash hours
into training.

HDF5 layout (written by :func:`save_image_text_hdf5`)::

    images         (n, channels, height, width) uint8
    captions       group: bytes (UTF-8, uint8) and offsets (m + 1,) int64 (see ``write_strings``;
                   older files: an (m,) string dataset, still read)
    caption_image  (m,) int64, the image each caption describes (optional when m == n)
    labels         (n,) int64, optional class of each image
    groups         (n,) int64, optional group of each image (kept on one side of a split)
    attribute class_names   JSON list of the class names labels index (optional)

Every dataset carries a Fletcher-32 checksum; a damaged member is a
``ValueError`` naming the file and member.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from contrastive_seq.data.hdf5 import (
    create_checked_dataset,
    member,
    open_for_reading,
    read_dataset,
    read_strings,
    write_hdf5_atomically,
    write_strings,
)
from contrastive_seq.user_warnings import warn_at_caller

MISSING_POLICIES = ("error", "skip")


class ImageTextDataset:
    """Images, their captions, and optionally a class and a group per image.

    Args:
        images: ``(n, channels, height, width)`` uint8 images (float images in
            [0, 1] are converted to uint8).
        captions: ``m`` caption strings.
        caption_image: ``(m,)`` index of the image each caption describes;
            ``None`` means caption i describes image i (then ``m`` must equal ``n``).
        labels: optional ``(n,)`` integer class of each image (for zero-shot evaluation).
        class_names: names of the classes ``labels`` index (needed with ``labels``).
        groups: optional ``(n,)`` integer group of each image: images of one
            group (variants of one picture, such as an emoji's skin tones)
            always fall on the same side of :meth:`split`, so a held-out
            image never has a near copy in training.

    Raises:
        ValueError: naming the argument, for mismatched numbers of images and
            captions, out-of-range indices, images without any caption, or bad labels.
    """

    def __init__(
        self,
        images: torch.Tensor,
        captions: Sequence[str],
        caption_image: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
        groups: torch.Tensor | None = None,
    ):
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(
                f"images must be a tensor of shape (n, channels, height, width) with n > 0, "
                f"got {getattr(images, 'shape', type(images).__name__)}"
            )
        if images.is_floating_point():
            if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
                raise ValueError("float images must be finite and lie in [0, 1]")
            images = (images * 255).round().to(torch.uint8)
        elif images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a sequence of strings")
        n, m = images.shape[0], len(captions)
        if caption_image is None:
            if m != n:
                raise ValueError(
                    f"mismatched numbers of images and captions: {n} images and {m} captions; "
                    "pass caption_image to give several captions per image"
                )
            caption_image = torch.arange(n)
        caption_image = torch.as_tensor(caption_image)
        if caption_image.shape != (m,) or caption_image.dtype.is_floating_point:
            raise ValueError(f"caption_image must be ({m},) integer indices, one per caption, got {tuple(caption_image.shape)}")
        caption_image = caption_image.long()
        if m and (caption_image.min() < 0 or caption_image.max() >= n):
            raise ValueError(f"caption_image must index the {n} images, got values in "
                             f"[{int(caption_image.min())}, {int(caption_image.max())}]")
        uncaptioned = torch.bincount(caption_image, minlength=n) == 0
        if uncaptioned.any():
            first = int(uncaptioned.nonzero()[0])
            raise ValueError(f"{int(uncaptioned.sum())} images have no caption (first: image {first})")
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.shape != (n,) or labels.dtype.is_floating_point:
                raise ValueError(f"labels must be ({n},) integers, one per image, got {tuple(labels.shape)}")
            if class_names is None:
                raise ValueError("labels need class_names, the name of each class")
            labels = labels.long()
            if labels.min() < 0 or labels.max() >= len(class_names):
                raise ValueError(f"labels must index the {len(class_names)} class_names")
        if groups is not None:
            groups = torch.as_tensor(groups)
            if groups.shape != (n,) or groups.dtype.is_floating_point or groups.dtype == torch.bool:
                raise ValueError(f"groups must be ({n},) integers, one per image, got {groups.dtype} {tuple(groups.shape)}")
            groups = groups.long()
        self.images = images
        self.captions = list(captions)
        self.caption_image = caption_image
        self.labels = labels
        self.class_names = None if class_names is None else list(class_names)
        self.groups = groups

    def __len__(self) -> int:
        """Number of images n."""
        return self.images.shape[0]

    @property
    def num_captions(self) -> int:
        """Number of captions m."""
        return len(self.captions)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: the shape of one image."""
        return tuple(self.images.shape[1:])

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """Images at ``index`` (any shape) as float32 in [0, 1]: ``index.shape + (C, H, W)``."""
        return self.images[index].float() / 255

    def subset(self, image_index: torch.Tensor) -> ImageTextDataset:
        """The images at ``image_index (k,)`` (distinct) with their captions and labels, re-indexed."""
        image_index = torch.as_tensor(image_index).long()
        new_position = torch.full((len(self),), -1, dtype=torch.long)
        new_position[image_index] = torch.arange(image_index.numel())
        kept = (new_position[self.caption_image] >= 0).nonzero().squeeze(1)
        return ImageTextDataset(
            self.images[image_index],
            [self.captions[i] for i in kept.tolist()],
            new_position[self.caption_image[kept]],
            None if self.labels is None else self.labels[image_index],
            self.class_names,
            None if self.groups is None else self.groups[image_index],
        )

    def split(self, fraction: float, seed: int = 0) -> tuple[ImageTextDataset, ImageTextDataset]:
        """A seeded random split into about ``(1 - fraction, fraction)`` of the images, each group on one side.

        The groups (each image its own group when ``groups`` is ``None``) are
        shuffled; the last ones go to the second part until it holds at least
        ``max(1, round(fraction * n))`` images (it exceeds that by less than
        the size of the group taken last), the rest to the first, which always
        keeps one group at least. Images keep the shuffled order of their groups.

        Raises:
            ValueError: ``fraction`` outside (0, 1), or fewer than two groups.
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
        groups = torch.arange(len(self)) if self.groups is None else self.groups
        _, group_of_image = groups.unique(return_inverse=True)
        num_groups = int(group_of_image.max()) + 1
        if num_groups < 2:
            raise ValueError(f"a split needs at least two groups of images, got {num_groups}")
        order = torch.randperm(num_groups, generator=torch.Generator().manual_seed(seed))
        images_from_end = torch.bincount(group_of_image, minlength=num_groups)[order].flip(0).cumsum(0)
        wanted = max(1, round(fraction * len(self)))
        held_out_groups = min(int((images_from_end < wanted).sum()) + 1, num_groups - 1)
        rank = torch.empty(num_groups, dtype=torch.long)
        rank[order] = torch.arange(num_groups)
        image_order = torch.sort(rank[group_of_image], stable=True).indices
        cut = len(self) - int(images_from_end[held_out_groups - 1])
        return self.subset(image_order[:cut]), self.subset(image_order[cut:])


def table_separator(path: Path, separator: str | None) -> str:
    """The field separator of a CSV / TSV table: ``separator`` if given, else a tab for ``.tsv`` / ``.tab``, else a comma."""
    if separator is None:
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    if not isinstance(separator, str) or len(separator) != 1:
        raise ValueError(f"separator must be one character (',' or '\\t'), got {separator!r}")
    return separator


def read_pairs_table(
    path: str | Path,
    image_key: str = "image",
    caption_key: str = "caption",
    separator: str | None = None,
    on_empty_caption: str = "error",
) -> list[dict[str, str]]:
    """Rows of a CSV / TSV file (with a header) or a JSON-lines file (``.jsonl``), each with an image path and a caption.

    Other columns (for example ``label``) are kept. Rows are numbered from 1,
    the first row after a CSV header being row 1.

    Args:
        path: the table.
        image_key, caption_key: the columns of the image path and the caption
            (open_clip's ``--csv-img-key`` / ``--csv-caption-key``; its own TSVs use ``filepath`` / ``title``).
        separator: the CSV field separator (open_clip's ``--csv-separator``);
            default a tab for ``.tsv``, else a comma.
        on_empty_caption: ``"error"``: a row whose caption is empty (or blank) raises naming it;
            ``"skip"``: such rows are dropped with one warning counting them.

    Raises:
        FileNotFoundError: naming ``path``; IsADirectoryError when it is a folder.
        ValueError: naming the file, for a missing column (listing those it has), and naming the row,
            for a row without an image path or with an empty caption.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; an image-caption table (.csv, .tsv, .jsonl) is expected")
    if not path.is_file():
        raise FileNotFoundError(f"image-caption file {path} does not exist")
    if on_empty_caption not in MISSING_POLICIES:
        raise ValueError(f"on_empty_caption must be one of {MISSING_POLICIES}, got {on_empty_caption!r}")
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as file:
            rows = []
            for number, line in enumerate((line for line in file if line.strip()), start=1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path} row {number} is not valid JSON: {error}") from None
        columns = sorted({key for row in rows if isinstance(row, dict) for key in row})
    else:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file, delimiter=table_separator(path, separator))
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    for key, argument in ((image_key, "image_key"), (caption_key, "caption_key")):
        if key not in columns:
            raise ValueError(f"{path} has no column {key!r}; its columns are {columns}; pass {argument}=<column>")
    empty = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get(image_key):
            raise ValueError(f"{path} row {number} must have a non-empty {image_key!r}, got {row}")
        caption = row.get(caption_key)
        if not isinstance(caption, str) or not caption.strip():
            empty.append(number)
    if empty:
        message = f"{len(empty)} of {len(rows)} rows of {path} have an empty {caption_key!r} (first: row {empty[0]})"
        if on_empty_caption == "error":
            raise ValueError(message + "; fill them or pass on_empty_caption='skip'")
        warn_at_caller(message + "; they are skipped")
        dropped = set(empty)
        rows = [row for number, row in enumerate(rows, start=1) if number not in dropped]
    return rows


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """One image file as ``(3, size, size)`` uint8 RGB; transparency is composited over white.

    Raises:
        ValueError naming the file when it cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for damaged or unknown files
        raise ValueError(f"image file {path} cannot be decoded: {error}") from error
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, rgba).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def load_image_text_file(
    path: str | Path,
    image_size: int,
    on_missing: str = "error",
    image_key: str = "image",
    caption_key: str = "caption",
    label_key: str | None = "label",
    group_key: str | None = "group",
    separator: str | None = None,
    on_empty_caption: str = "error",
) -> ImageTextDataset:
    """An :class:`ImageTextDataset` from a CSV / TSV / JSON-lines table of (image path, caption) rows.

    Rows that name the same image give it several captions. Relative image
    paths are resolved against the table's folder. Every path is checked
    before any image is read. open_clip's TSV loads with
    ``image_key="filepath", caption_key="title"``.

    Args:
        path: the ``.csv``, ``.tsv`` or ``.jsonl`` file.
        image_size: images are resized to ``(image_size, image_size)``.
        on_missing: ``"error"``: a missing image file raises
            ``FileNotFoundError`` naming it (and how many are missing);
            ``"skip"``: its rows are dropped with one warning that counts them.
        image_key, caption_key: the columns holding the image path and the caption.
        label_key: an optional column with each image's class name (``None``: no labels).
            When the table lacks it, or some rows leave it empty, a warning says
            that zero-shot classification is not available.
        group_key: an optional column with each image's group (see
            :class:`ImageTextDataset`; ``None``: no groups).
        separator, on_empty_caption: see :func:`read_pairs_table`.

    Raises:
        FileNotFoundError: a missing table or image file (with ``on_missing="error"``).
        ValueError: bad rows, no rows left, an image with two different labels or groups.
    """
    if on_missing not in MISSING_POLICIES:
        raise ValueError(f"on_missing must be one of {MISSING_POLICIES}, got {on_missing!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    path = Path(path)
    rows = read_pairs_table(path, image_key, caption_key, separator, on_empty_caption)
    resolved = [(path.parent / row[image_key]) for row in rows]
    missing = sorted({str(p) for p in resolved if not p.is_file()})
    if missing and on_missing == "error":
        raise FileNotFoundError(
            f"{len(missing)} image files named in {path} do not exist (first: {missing[0]}); "
            "fix the paths or pass on_missing='skip' to drop their rows"
        )
    if missing:
        warn_at_caller(f"skipped {len(missing)} missing image files named in {path} (first: {missing[0]})")
        absent = set(missing)
        kept = [i for i, p in enumerate(resolved) if str(p) not in absent]
        rows, resolved = [rows[i] for i in kept], [resolved[i] for i in kept]
    if not rows:
        raise ValueError(f"{path} has no rows with an existing image")
    image_of_path: dict[Path, int] = {}
    caption_image = [image_of_path.setdefault(p, len(image_of_path)) for p in resolved]
    labels, class_names, groups = None, None, None
    label_of_image = per_image_column(path, rows, caption_image, image_key, label_key)
    if label_of_image is None and label_key is not None:
        unlabelled = sum(row.get(label_key) in (None, "") for row in rows)
        warn_at_caller(
            f"{path}: {unlabelled} of {len(rows)} rows have no {label_key!r} value, so the images carry no class "
            "labels and zero-shot classification is not available (retrieval still is); pass label_key=None "
            "to say the table has none",
        )
    if label_of_image is not None:
        class_names = sorted(set(label_of_image))
        labels = torch.tensor([class_names.index(label) for label in label_of_image])
    group_of_image = per_image_column(path, rows, caption_image, image_key, group_key)
    if group_of_image is not None:
        group_ids = {group: number for number, group in enumerate(dict.fromkeys(group_of_image))}
        groups = torch.tensor([group_ids[group] for group in group_of_image])
    images = torch.stack([read_image(p, image_size) for p in image_of_path])
    captions = [row[caption_key] for row in rows]
    return ImageTextDataset(images, captions, torch.tensor(caption_image), labels, class_names, groups)


def per_image_column(
    path: Path, rows: Sequence[dict[str, str]], caption_image: Sequence[int], image_key: str, key: str | None
) -> list[str] | None:
    """The value of column ``key`` for each image (rows of one image must agree); ``None`` if some row lacks it.

    Raises:
        ValueError: naming the file and the image, when its rows give two values.
    """
    if key is None or any(row.get(key) in (None, "") for row in rows):
        return None
    value_of_image: dict[int, str] = {}
    for row, image in zip(rows, caption_image):
        if value_of_image.setdefault(image, str(row[key])) != str(row[key]):
            raise ValueError(f"{path}: image {row[image_key]} has two {key} values ({value_of_image[image]!r} and {row[key]!r})")
    return [value_of_image[image] for image in range(len(value_of_image))]


def save_image_text_hdf5(path: str | Path, dataset: ImageTextDataset) -> None:
    """Write ``dataset`` in the module's HDF5 layout (see the module docstring), atomically."""

    def fill(file: h5py.File) -> None:
        create_checked_dataset(file, "images", data=dataset.images.numpy(), compression="gzip")
        write_strings(file, "captions", dataset.captions)
        create_checked_dataset(file, "caption_image", data=dataset.caption_image.numpy())
        if dataset.labels is not None:
            create_checked_dataset(file, "labels", data=dataset.labels.numpy())
            file.attrs["class_names"] = json.dumps(dataset.class_names)
        if dataset.groups is not None:
            create_checked_dataset(file, "groups", data=dataset.groups.numpy())

    write_hdf5_atomically(path, fill)


def load_image_text_hdf5(path: str | Path) -> ImageTextDataset:
    """Read an :class:`ImageTextDataset` from the module's HDF5 layout.

    Raises:
        FileNotFoundError: naming ``path``.
        ValueError: naming the file, for a missing ``images`` / ``captions``
            entry or any inconsistency :class:`ImageTextDataset` refuses
            (mismatched numbers of images and captions among them).
    """
    path = Path(path)
    where = str(path)
    with open_for_reading(path) as file:
        images = torch.from_numpy(read_dataset(file, "images", where, ndim=4))
        captions = read_strings(file, "captions", where)
        caption_image, labels, groups = (
            torch.from_numpy(read_dataset(file, key, where, 1)) if member(file, key, where) is not None else None
            for key in ("caption_image", "labels", "groups")
        )
        class_names = json.loads(file.attrs["class_names"]) if "class_names" in file.attrs else None
    try:
        return ImageTextDataset(images, captions, caption_image, labels, class_names, groups)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from error


def caption_classes(
    images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], templates: Sequence[str]
) -> ImageTextDataset:
    """Captions from templates over class names: image i gets ``template.format(class_names[labels[i]])`` for each template.

    Turns a labelled image set (Fashion-MNIST) into image-caption pairs with
    ``len(templates)`` captions per image, for example "a photo of a sneaker".

    Args:
        images: ``(n, C, H, W)`` uint8 or float in [0, 1].
        labels: ``(n,)`` integer classes.
        class_names: the name of each class, as it should read in a caption.
        templates: strings with one ``{}`` where the class name goes.
    """
    if not templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with one '{{}}' each, got {templates!r}")
    labels = torch.as_tensor(labels).long()
    n = labels.shape[0]
    captions = [template.format(class_names[label]) for label in labels.tolist() for template in templates]
    caption_image = torch.arange(n).repeat_interleave(len(templates))
    return ImageTextDataset(images, captions, caption_image, labels, class_names)
