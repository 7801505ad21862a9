"""Writing WebDataset shards from a table of image-caption pairs or from a folder of class folders.

Samples are written with ``webdataset.ShardWriter`` in the layout
:mod:`contrastive_seq.data.shards` reads: the image's own bytes (not
re-encoded) under its extension, the caption as ``txt``, the class as
``cls``. Keys are the sample's number, zero-padded, so shards sort and
concatenate in order. Everything is checked before the first shard is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from contrastive_seq.data.image_text import MISSING_POLICIES, read_pairs_table
from contrastive_seq.data.shards import IMAGE_EXTENSIONS
from contrastive_seq.user_warnings import warn_at_caller


def _check_pattern(pattern: str, samples_per_shard: int) -> None:
    if not isinstance(pattern, str) or "%" not in pattern:
        raise ValueError(f"pattern must hold a printf field for the shard number, such as 'pairs-%06d.tar', got {pattern!r}")
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be a positive int, got {samples_per_shard!r}")


def _image_extension(path: Path) -> str:
    extension = path.suffix.lower().lstrip(".")
    if extension not in IMAGE_EXTENSIONS:
        raise ValueError(f"image {path} has extension {extension!r}; shards hold one of {IMAGE_EXTENSIONS}")
    return extension


def write_shards(
    pattern: str, samples: Iterable[tuple[Path, str | None, int | None]], samples_per_shard: int
) -> list[Path]:
    """Write ``(image path, caption or None, class or None)`` samples to shards ``pattern % 0, pattern % 1, ...``.

    Returns:
        the shard files written, in order.
    """
    import webdataset

    _check_pattern(pattern, samples_per_shard)
    Path(pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with webdataset.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0,
                                post=lambda name: written.append(Path(name))) as writer:
        for number, (image, caption, label) in enumerate(samples):
            sample = {"__key__": f"{number:09d}", _image_extension(image): image.read_bytes()}
            if caption is not None:
                sample["txt"] = caption
            if label is not None:
                sample["cls"] = str(label)
            writer.write(sample)
    return written


def shards_from_table(
    table: str | Path,
    pattern: str,
    samples_per_shard: int = 10_000,
    on_missing: str = "error",
    image_key: str = "image",
    caption_key: str = "caption",
    label_key: str | None = None,
) -> tuple[list[Path], list[str] | None]:
    """Shards of image-caption pairs from a CSV / JSON-lines table (see
    :func:`~contrastive_seq.data.image_text.read_pairs_table`), one sample per row.

    Args:
        table: the ``.csv`` or ``.jsonl`` file; relative image paths are resolved against its folder.
        pattern: shard file names, e.g. ``"out/pairs-%06d.tar"`` (read back as ``"out/pairs-{000000..000009}.tar"``).
        samples_per_shard: samples per shard (the last may hold fewer).
        on_missing: ``"error"`` or ``"skip"`` (with one warning counting them) rows whose image does not exist.
        image_key, caption_key: the table's columns holding the image path and the caption.
        label_key: an optional column of class names, written as ``cls`` numbers into the sorted names.

    Returns:
        ``(shard files, sorted class names or None)``.

    Raises:
        FileNotFoundError: naming the first missing image (with ``on_missing="error"``).
        ValueError: bad rows, images of an unsupported extension, a row without a label.
    """
    if on_missing not in MISSING_POLICIES:
        raise ValueError(f"on_missing must be one of {MISSING_POLICIES}, got {on_missing!r}")
    _check_pattern(pattern, samples_per_shard)
    table = Path(table)
    rows = read_pairs_table(table, image_key, caption_key)
    images = [table.parent / row[image_key] for row in rows]
    missing = [str(path) for path in images if not path.is_file()]
    if missing and on_missing == "error":
        raise FileNotFoundError(f"{len(missing)} image files named in {table} do not exist (first: {missing[0]})")
    if missing:
        warn_at_caller(f"skipped {len(missing)} rows of {table} whose image does not exist (first: {missing[0]})")
    kept = [i for i, path in enumerate(images) if path.is_file()]
    for i in kept:
        _image_extension(images[i])
    class_names = None
    labels: list[int | None] = [None] * len(rows)
    if label_key is not None:
        unlabelled = [i + 1 for i in kept if rows[i].get(label_key) in (None, "")]
        if unlabelled:
            raise ValueError(f"{table} row {unlabelled[0]} has no {label_key!r}")
        class_names = sorted({str(rows[i][label_key]) for i in kept})
        labels = [class_names.index(str(row[label_key])) if row.get(label_key) not in (None, "") else None for row in rows]
    shards = write_shards(pattern, ((images[i], rows[i][caption_key], labels[i]) for i in kept), samples_per_shard)
    return shards, class_names


def shards_from_folder(root: str | Path, pattern: str, samples_per_shard: int = 10_000) -> tuple[list[Path], list[str]]:
    """Shards of labelled images from class folders (``root/<class>/<image>``, torchvision's ``ImageFolder`` layout).

    Returns:
        ``(shard files, class names)``: ``cls`` numbers index the sorted class folder names.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folders or images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a folder")
    try:
        classes, class_to_index = find_classes(root)
        samples = make_dataset(root, class_to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise ValueError(f"image folder {root}: {error}") from error
    for path, _ in samples:
        _image_extension(Path(path))
    shards = write_shards(pattern, ((Path(path), None, label) for path, label in samples), samples_per_shard)
    return shards, classes

