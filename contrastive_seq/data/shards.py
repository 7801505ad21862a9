"""WebDataset shards read by index: image-text pairs and images with optional labels.

A shard is a tar file of samples in the WebDataset layout: the members of one
sample share a key (the file name up to its first dot) and differ by
extension: an image (``jpg``, ``jpeg``, ``png``, ``webp``, ``bmp``, ``ppm``),
a caption (``txt``) and optionally an integer class (``cls``). Shard lists are
written as open_clip accepts them: brace patterns
(``pairs-{000000..000099}.tar``), several joined by ``::``, or a list.

Unlike a streaming WebDataset pipeline, the shards are indexed once when the
dataset is built (the tar headers: where each image's bytes start and how many
there are, each sample's key, caption and class), and an image is then read by
its index: one read of its location in the index, one of its bytes. Each
shard's index is cached (``<shard>.index.npz`` beside it, or in ``index_dir``)
for its path, size and modification time, so a restart reads it instead of the
shard; a changed shard is indexed again. The index stays on disk and is read
by rows (:mod:`contrastive_seq.data.npz_rows`), as are the captions' token ids
(:mod:`contrastive_seq.data.shard_tokens`): what a dataset holds in memory does
not grow with the number of samples (the class labels aside, 8 bytes a sample).
The datasets expose the interface of the in-memory ones (``dataset[index]``
for any index tensor, ``captions``, ``caption_image``, ``labels``), so the
samplers, views and the Trainer's (seed, step) batch recipe, exact mid-epoch
resume and any number of DataLoader workers and ranks work on them unchanged.

Bad input is found while indexing, before any training: a shard list that
matches no file, a truncated or unreadable tar, a sample without its image or
caption (an error naming the shard and the sample's key, or a counted skip with
``on_missing="skip"``).
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from braceexpand import braceexpand

from contrastive_seq.atomic_files import write_atomically

from contrastive_seq.data.arrays import ArrayDataset, random_split
from contrastive_seq.data.image_text import MISSING_POLICIES, ImageTextDataset, read_image
from contrastive_seq.data.npz_rows import NpzColumn, NpzRagged, file_version, ragged_arrays, read_at
from contrastive_seq.user_warnings import warn_at_caller

#: extensions of the image member of a sample
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm")
#: a tar archive ends with two zero blocks of 512 bytes
END_OF_ARCHIVE = 1024
#: the layout of cached shard indexes (a cache of another version is rebuilt)
INDEX_VERSION = 2


def expand_shard_list(shards: str | Sequence[str]) -> list[Path]:
    """The shard files a shard list names, in order.

    Args:
        shards: a brace pattern (``"data/pairs-{000000..000003}.tar"``), several
            joined by ``::`` (open_clip's separator), or a sequence of such patterns.

    Raises:
        FileNotFoundError: naming the pattern and the first file it names that does not exist.
        ValueError: an empty shard list.
    """
    patterns = shards.split("::") if isinstance(shards, str) else list(shards)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"shards must be a non-empty pattern or list of patterns, got {shards!r}")
    paths = []
    for pattern in patterns:
        expanded = [Path(name) for name in braceexpand(pattern)]
        missing = [path for path in expanded if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"shard list {pattern!r} names {len(missing)} of {len(expanded)} files that do not exist "
                f"(first: {missing[0]})"
            )
        paths.extend(expanded)
    return paths


@dataclass
class _Sample:
    """What indexing found of one sample: where its image bytes are, its caption and class."""

    key: str
    image: tuple[int, int] | None = None  # (offset, size) of the image bytes in the shard
    caption: str | None = None
    label: int | None = None


def _scan_shard(path: Path) -> list[_Sample]:
    """The samples of one shard in the order their first member appears.

    Raises:
        ValueError: naming the shard, for a truncated or unreadable tar, or an unreadable caption or class.
    """
    samples: dict[str, _Sample] = {}
    size = path.stat().st_size
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                stem, _, extension = name.partition(".")
                key = member.name[: len(member.name) - len(name)] + stem
                sample = samples.setdefault(key, _Sample(key))
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"member {member.name} ends past the end of the file")
                extension = extension.lower()
                if extension in IMAGE_EXTENSIONS:
                    sample.image = (member.offset_data, member.size)
                elif extension in ("txt", "cls"):
                    text = tar.extractfile(member).read().decode("utf-8").strip()
                    if extension == "txt":
                        sample.caption = text
                    else:
                        try:
                            sample.label = int(text)
                        except ValueError:
                            raise ValueError(f"shard {path}: sample {key} has class {text!r}, expected an integer") from None
        with path.open("rb") as file:  # a tar cut at a member boundary reads as a shorter one: check its end
            file.seek(max(0, size - END_OF_ARCHIVE))
            if size < END_OF_ARCHIVE or file.read().count(0) != END_OF_ARCHIVE:
                raise tarfile.ReadError(f"it does not end with the {END_OF_ARCHIVE} zero bytes that close a tar archive")
    except (tarfile.TarError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"shard {path} is truncated or not a readable tar file: {error}") from error
    return list(samples.values())


def index_shard(path: Path) -> dict[str, np.ndarray]:
    """The index of one shard as arrays, one row per sample in the order its first member appears.

    ``location`` ``(n, 2)`` int64 holds where each image's bytes start in the
    shard and how many there are (``-1, -1``: no image); ``caption_values`` /
    ``caption_ends`` and ``key_values`` / ``key_ends`` the captions and keys as
    UTF-8 bytes end to end (read a row with :class:`~contrastive_seq.data.npz_rows.NpzRagged`),
    ``has_caption`` which exist; ``label`` (int64) with ``has_label``.

    Raises:
        ValueError: naming the shard (see :func:`_scan_shard`).
    """
    samples = _scan_shard(path)
    return {
        "location": np.array([s.image or (-1, -1) for s in samples], dtype=np.int64).reshape(len(samples), 2),
        **ragged_arrays("key", [s.key.encode("utf-8") for s in samples], np.uint8),
        **ragged_arrays("caption", [(s.caption or "").encode("utf-8") for s in samples], np.uint8),
        "has_caption": np.array([s.caption is not None for s in samples], dtype=bool),
        "label": np.array([0 if s.label is None else s.label for s in samples], dtype=np.int64),
        "has_label": np.array([s.label is not None for s in samples], dtype=bool),
    }


def index_cache_path(shard: Path, index_dir: str | os.PathLike | None = None) -> Path:
    """Where the index of ``shard`` is cached: ``<shard>.index.npz`` beside it, or in ``index_dir``
    under the shard's name and a hash of its absolute path (shards of one name in several folders do not collide)."""
    if index_dir is None:
        return shard.with_name(f"{shard.name}.index.npz")
    digest = hashlib.sha256(str(shard.resolve()).encode()).hexdigest()[:16]
    return Path(index_dir) / f"{shard.name}.{digest}.index.npz"


def shard_stamp(shard: Path, version: int) -> dict[str, np.ndarray]:
    """What a cache derived from ``shard`` is valid for: the cache layout ``version``, the shard's size and
    modification time (``stamp``) and its absolute path (``source``)."""
    status = shard.stat()
    return {"stamp": np.array([version, status.st_size, status.st_mtime_ns], dtype=np.int64),
            "source": np.frombuffer(str(shard.resolve()).encode("utf-8"), dtype=np.uint8)}


def _is_fresh(cache: Path, stamp: dict[str, np.ndarray]) -> bool:
    """Whether ``cache`` exists, is readable and was written for ``stamp`` (:func:`shard_stamp`)."""
    try:
        with np.load(cache, allow_pickle=False) as saved:
            return all(np.array_equal(saved[name], value) for name, value in stamp.items())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False  # no cache yet, or a damaged one


def fallback_folder() -> Path:
    """Where caches go when the folder asked for cannot be written: a folder of the system's temporary directory."""
    return Path(tempfile.gettempdir()) / "contrastive_seq-shard-indexes"


def cached_arrays(
    cache: Path, fallback: Path, stamp: dict[str, np.ndarray], build: Callable[[], dict[str, np.ndarray]]
) -> Path:
    """The file of arrays derived from a shard: ``cache`` (or ``fallback``) when it was written for
    ``stamp`` (:func:`shard_stamp`), else ``build()``'s arrays with ``stamp`` written atomically
    (``np.savez``, uncompressed) at ``cache``, or, when its folder cannot be written (read-only), at
    ``fallback`` with a warning. Returns where they are."""
    for candidate in (cache, fallback):
        if _is_fresh(candidate, stamp):
            return candidate
    arrays = {**stamp, **build()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, lambda file: np.savez(file, **arrays))
        return cache
    except OSError as error:
        warn_at_caller(  # once per folder and caller
            f"shard indexes cannot be cached in {cache.parent} ({error.strerror or error}); they are written to "
            f"{fallback.parent} instead (set index_dir to a writable folder to choose where)"
        )
        fallback.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(fallback, lambda file: np.savez(file, **arrays))
        return fallback


def cached_shard_index(shard: Path, index_dir: str | os.PathLike | None = None) -> Path:
    """The file holding the index of ``shard`` (:func:`index_shard`): its cache when that was written for
    this shard's absolute path, size and modification time, else the index built and cached (see
    :func:`cached_arrays`; in :func:`fallback_folder` when the folder asked for cannot be written).
    """
    return cached_arrays(index_cache_path(shard, index_dir), index_cache_path(shard, fallback_folder()),
                         shard_stamp(shard, INDEX_VERSION), lambda: index_shard(shard))


class _ShardIndex:
    """One shard's cached index, read by rows from disk: image locations, keys and captions."""

    def __init__(self, shard: Path, cache: Path):
        self.shard, self.cache = shard, cache
        self.version = file_version(shard.stat())  # newer than the index's stamp: refused when read
        self.location = NpzColumn(cache, "location")
        self.keys, self.captions = NpzRagged(cache, "key"), NpzRagged(cache, "caption")

    def image_bytes(self, row: int) -> bytes:
        """The encoded image of sample ``row`` (see :func:`~contrastive_seq.data.npz_rows.read_at`)."""
        offset, size = self.location.span(row, row + 1)[0].tolist()
        return read_at(self.shard, self.version, size, offset)


def _narrow(rows: np.ndarray) -> np.ndarray:
    """Row numbers as int32 when they fit (half the memory), else int64."""
    return rows.astype(np.int32 if rows.size == 0 or rows.max() < 2**31 else np.int64)


class _ShardReader:
    """Images read by index from indexed shards (see the module docstring).

    What the reader holds does not grow with the number of samples: each
    shard's index stays on disk (:class:`_ShardIndex`), and a sample is found
    by the number of complete samples before its shard (one entry a shard).
    Only the class labels (8 bytes a sample, when every sample has one), the
    rows a shard keeps when ``on_missing="skip"`` dropped some of its samples,
    and the rows of a :meth:`subset` (4 bytes each) are in memory.

    Args:
        shards: the shard list (see :func:`expand_shard_list`).
        image_size: images are decoded as RGB and resized to ``(image_size, image_size)``
            (transparency composited over white, as :func:`~contrastive_seq.data.image_text.read_image`).
        need_caption: a sample without a caption is missing something.
        on_missing: ``"error"``: a sample without its image (or caption, when
            needed) raises ``ValueError`` naming the shard and the key;
            ``"skip"``: such samples are dropped with one warning counting them.
        class_names: names of the classes the ``cls`` members index; defaults
            to ``"0"``, ``"1"``, ... up to the largest class found.
        index_dir: where the shard indexes are cached (see :func:`cached_shard_index`);
            ``None``: beside each shard.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        image_size: int,
        need_caption: bool,
        on_missing: str = "error",
        class_names: Sequence[str] | None = None,
        index_dir: str | os.PathLike | None = None,
    ):
        if on_missing not in MISSING_POLICIES:
            raise ValueError(f"on_missing must be one of {MISSING_POLICIES}, got {on_missing!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.shard_paths = expand_shard_list(shards)
        self.image_size = image_size
        self.shard_indexes: list[_ShardIndex]  # each shard's index, read from disk
        self.shard_indexes, self._kept, counts, labels, has_label = [], [], [], [], []
        skipped, first_skipped = 0, None
        for path in self.shard_paths:
            index = _ShardIndex(path, cached_shard_index(path, index_dir))
            with np.load(index.cache, allow_pickle=False) as saved:  # this shard's flags, not kept
                lacks_image = saved["location"][:, 1] < 0
                lacks_caption = ~saved["has_caption"] if need_caption else np.zeros_like(lacks_image)
                shard_labels, shard_has_label = saved["label"], saved["has_label"]
            incomplete = np.flatnonzero(lacks_image | lacks_caption)
            if incomplete.size:
                row = int(incomplete[0])
                lacks = [what for what, absent in (("image", lacks_image[row]), ("caption", lacks_caption[row]))
                         if absent]
                if on_missing == "error":
                    raise ValueError(
                        f"shard {path}: sample {index.keys.text(row)} has no {' and no '.join(lacks)}; "
                        "fix the shard or pass on_missing='skip' to drop such samples"
                    )
                skipped += incomplete.size
                first_skipped = first_skipped or f"{path}: {index.keys.text(row)}"
            rows = np.flatnonzero(~(lacks_image | lacks_caption))
            self.shard_indexes.append(index)
            self._kept.append(None if rows.size == len(lacks_image) else _narrow(rows))
            counts.append(rows.size)
            labels.append(shard_labels[rows])
            has_label.append(shard_has_label[rows])
        if skipped:
            warn_at_caller(f"skipped {skipped} incomplete samples (first: {first_skipped})")
        if not sum(counts):
            raise ValueError(f"the shards {[str(p) for p in self.shard_paths]} hold no complete sample")
        self._shard_ends = np.cumsum(counts, dtype=np.int64)  # complete samples up to and with each shard
        self._rows: np.ndarray | None = None  # a subset's rows among all complete samples (None: all of them)
        labelled = bool(np.concatenate(has_label).all())
        self.labels, self.class_names = self._read_labels(np.concatenate(labels) if labelled else None, class_names)

    def _read_labels(
        self, labels: np.ndarray | None, class_names: Sequence[str] | None
    ) -> tuple[torch.Tensor | None, list[str] | None]:
        """``(labels (n,), class names)`` from every sample's class (``labels`` ``None``: some lack one: ``(None, None)``)."""
        if labels is None:
            return None, None
        tensor = torch.from_numpy(labels)
        if class_names is None:
            class_names = [str(k) for k in range(int(tensor.max()) + 1)]
        if tensor.min() < 0 or tensor.max() >= len(class_names):
            raise ValueError(f"the shards' classes lie in [{int(tensor.min())}, {int(tensor.max())}], "
                             f"outside the {len(class_names)} class_names")
        return tensor, list(class_names)

    def __len__(self) -> int:
        """Number of images n."""
        return int(self._shard_ends[-1]) if self._rows is None else self._rows.size

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where samples ``index (k,)`` (in ``[0, n)``) lie: ``(shard (k,), row in that shard's index (k,))``."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"sample indices from {index.min()} to {index.max()} outside [0, {len(self)})")
        complete = index if self._rows is None else self._rows[index].astype(np.int64)
        shard = np.searchsorted(self._shard_ends, complete, side="right")
        row = complete - np.concatenate([[0], self._shard_ends])[shard]
        for number in np.unique(shard).tolist():
            if self._kept[number] is not None:
                here = shard == number
                row[here] = self._kept[number][row[here]]
        return shard, row

    def _texts(self, field: str) -> list[str]:
        """Every sample's key or caption (``field``), read from the shard indexes."""
        shard, row = self.locate(np.arange(len(self)))
        return [getattr(self.shard_indexes[s], field).text(r) for s, r in zip(shard.tolist(), row.tolist())]

    @property
    def keys(self) -> list[str]:
        """The samples' keys, in order (read from the shard indexes on each access)."""
        return self._texts("keys")

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(3, image_size, image_size)``: the shape of one decoded image."""
        return 3, self.image_size, self.image_size

    def _image(self, shard: int, row: int) -> torch.Tensor:
        """The image of sample ``row`` of shard ``shard`` as ``(3, image_size, image_size)`` uint8."""
        index = self.shard_indexes[shard]
        try:
            return read_image(io.BytesIO(index.image_bytes(row)), self.image_size)
        except OSError as error:
            raise ValueError(f"shard {index.shard}: the image of sample {index.keys.text(row)} cannot be decoded: "
                             f"{error}") from error

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Images at ``index`` (any shape, or a slice), float32 in [0, 1]: ``index.shape + (3, image_size, image_size)``."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index)
        size = self.image_size
        if not index.numel():
            return torch.empty(*index.shape, 3, size, size)
        shard, row = self.locate(index.reshape(-1).numpy())
        images = torch.stack([self._image(s, r) for s, r in zip(shard.tolist(), row.tolist())])
        return images.reshape(*index.shape, 3, size, size).float() / 255

    def _subset_rows(self, image_index: torch.Tensor) -> _ShardReader:
        """A copy holding the samples at ``image_index (k,)`` only, in that order (nothing is read)."""
        image_index = torch.as_tensor(image_index).long().numpy()
        part = copy.copy(self)
        rows = image_index if self._rows is None else self._rows[image_index]
        part._rows = _narrow(np.asarray(rows, dtype=np.int64))
        part.labels = None if self.labels is None else self.labels[torch.from_numpy(image_index)]
        return part


class ShardedImageText(_ShardReader):
    """Image-caption pairs in shards (one ``txt`` caption per image), with the interface of
    :class:`~contrastive_seq.data.image_text.ImageTextDataset`.

    ``dataset[index]`` reads and decodes the images at ``index`` (any shape):
    ``index.shape + (3, image_size, image_size)`` float32 in [0, 1]. ``captions``
    (n strings, decoded from arrays on each access), ``caption_image`` ``(n,)`` (caption i describes image i),
    ``labels`` ``(n,)`` and ``class_names`` (when every sample has a ``cls``),
    ``groups`` (``None``) are in memory. Arguments as :class:`_ShardReader`'s,
    except that a caption is always needed.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        image_size: int,
        on_missing: str = "error",
        class_names: Sequence[str] | None = None,
        index_dir: str | os.PathLike | None = None,
    ):
        super().__init__(shards, image_size, True, on_missing, class_names, index_dir)

    #: one caption per image: caption i describes image i
    groups = None

    @property
    def num_captions(self) -> int:
        """Number of captions: one per image."""
        return len(self)

    @property
    def caption_image(self) -> torch.Tensor:
        """``(n,)`` the image each caption describes: ``arange(n)`` (made on each access, not held)."""
        return torch.arange(len(self))

    @property
    def captions(self) -> list[str]:
        """The n captions, caption i of image i (read from the shard indexes on each access: their
        token ids are cached per shard and read by batch, see :mod:`contrastive_seq.data.shard_tokens`)."""
        return self._texts("captions")

    def caption(self, i: int) -> str:
        """Caption ``i`` (read from its shard's index)."""
        (shard,), (row,) = self.locate(np.array([i]))
        return self.shard_indexes[shard].captions.text(int(row))

    def subset(self, image_index: torch.Tensor) -> ShardedImageText:
        """The pairs at ``image_index (k,)`` (distinct), re-indexed; reads nothing."""
        return self._subset_rows(image_index)

    #: a seeded random split into about ``(1 - fraction, fraction)`` of the pairs (the in-memory dataset's split)
    split = ImageTextDataset.split


class ShardedImages(_ShardReader):
    """Images in shards with optional integer classes (``cls``), with the interface of
    :class:`~contrastive_seq.data.arrays.ArrayDataset`.

    ``dataset[index]`` reads and decodes the images at ``index`` (any shape):
    ``index.shape + (3, image_size, image_size)`` float32 in [0, 1]; ``labels``
    is ``(n,)`` when every sample has a class, else ``None``. Arguments as
    :class:`_ShardReader`'s; captions are not needed.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        image_size: int,
        on_missing: str = "error",
        class_names: Sequence[str] | None = None,
        index_dir: str | os.PathLike | None = None,
    ):
        super().__init__(shards, image_size, False, on_missing, class_names, index_dir)

    def subset(self, image_index: torch.Tensor) -> ShardedImages:
        """The images at ``image_index (k,)``, re-indexed; reads nothing."""
        return self._subset_rows(image_index)

    def split(self, fraction: float, seed: int = 0) -> tuple[ShardedImages, ShardedImages]:
        """A seeded random split into ``(1 - fraction, fraction)`` parts, as :meth:`ArrayDataset.split`."""
        first, second = random_split(len(self), fraction, seed)
        return self.subset(first), self.subset(second)

    def load(self) -> ArrayDataset:
        """Every image decoded into memory: ``ArrayDataset(inputs (n, 3, S, S), labels)`` (probes on a small part)."""
        return ArrayDataset(self[torch.arange(len(self))], self.labels)
