"""WebDataset shards read by index: image-text pairs and images with optional labels.

A shard is a tar file of samples in the WebDataset layout: the members of one
sample share a key (the file name up to its first dot) and differ by
extension: an image (``jpg``, ``jpeg``, ``png``, ``webp``, ``bmp``, ``ppm``),
a caption (``txt``) and optionally an integer class (``cls``). Shard lists are
written as open_clip accepts them: brace patterns
(``pairs-{000000..000099}.tar``), several joined by ``::``, or a list.

Unlike a streaming WebDataset pipeline, the shards are indexed once when the
dataset is built (the tar headers: where each image's bytes start and how many
there are; captions and classes are small and kept in memory), and an image is
then read by its index: one seek and one read. Each shard's index is cached
(``<shard>.index.npz`` beside it, or in ``index_dir``) for its path, size and
modification time, so a restart reads it instead of the shard; a changed shard
is indexed again. The datasets therefore expose
the interface of the in-memory ones (``dataset[index]`` for any index tensor,
``captions``, ``caption_image``, ``labels``), so the samplers, views and the
Trainer's (seed, step) batch recipe, exact mid-epoch resume and any number of
DataLoader workers and ranks work on them unchanged.

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
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from braceexpand import braceexpand

from contrastive_seq.atomic_files import write_atomically

from contrastive_seq.data.arrays import ArrayDataset, random_split
from contrastive_seq.data.image_text import MISSING_POLICIES, ImageTextDataset, read_image
from contrastive_seq.user_warnings import warn_at_caller

#: extensions of the image member of a sample
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm")
#: a tar archive ends with two zero blocks of 512 bytes
END_OF_ARCHIVE = 1024
#: the layout of cached shard indexes (a cache of another version is rebuilt)
INDEX_VERSION = 1


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


class _Texts:
    """Texts held as two arrays, their UTF-8 bytes joined ``data (total,) uint8`` and where each ends
    ``ends (n,) int64``: a million captions are two buffers, not a million Python objects, so forked
    DataLoader workers share their pages (no reference count is ever written to them)."""

    def __init__(self, data: np.ndarray, ends: np.ndarray):
        self.data, self.ends = data, ends

    @classmethod
    def from_list(cls, texts: Sequence[str]) -> _Texts:
        encoded = [text.encode("utf-8") for text in texts]
        ends = np.cumsum([len(item) for item in encoded], dtype=np.int64)
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), ends)

    @classmethod
    def concatenate(cls, parts: Sequence[_Texts]) -> _Texts:
        shifts = np.cumsum([0] + [len(part.data) for part in parts[:-1]], dtype=np.int64)
        return cls(np.concatenate([part.data for part in parts]),
                   np.concatenate([part.ends + shift for part, shift in zip(parts, shifts)]))

    def _starts(self) -> np.ndarray:
        return np.concatenate([np.zeros(1, dtype=np.int64), self.ends[:-1]])

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i > 0 else 0
        return self.data[start : int(self.ends[i])].tobytes().decode("utf-8")

    def take(self, rows: np.ndarray) -> _Texts:
        """The texts at ``rows (k,)``, in that order."""
        starts, rows = self._starts(), np.asarray(rows, dtype=np.int64)
        lengths = (self.ends - starts)[rows]
        ends = np.cumsum(lengths, dtype=np.int64)
        gather = np.repeat(starts[rows] - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)
        return _Texts(self.data[gather], ends)

    def tolist(self) -> list[str]:
        joined = self.data.tobytes()
        return [joined[a:b].decode("utf-8") for a, b in zip(self._starts().tolist(), self.ends.tolist())]


def index_shard(path: Path) -> dict[str, np.ndarray]:
    """The index of one shard as arrays, one row per sample in the order its first member appears.

    ``offset`` / ``size`` (int64) locate the image's bytes (-1: no image);
    ``caption_bytes`` / ``caption_ends`` and ``key_bytes`` / ``key_ends`` hold
    the captions and keys (see :class:`_Texts`), ``has_caption`` says
    which exist; ``label`` (int64) with ``has_label``.

    Raises:
        ValueError: naming the shard (see :func:`_scan_shard`).
    """
    samples = _scan_shard(path)
    keys = _Texts.from_list([sample.key for sample in samples])
    captions = _Texts.from_list([sample.caption or "" for sample in samples])
    return {
        "offset": np.array([-1 if s.image is None else s.image[0] for s in samples], dtype=np.int64),
        "size": np.array([-1 if s.image is None else s.image[1] for s in samples], dtype=np.int64),
        "key_bytes": keys.data,
        "key_ends": keys.ends,
        "caption_bytes": captions.data,
        "caption_ends": captions.ends,
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


def cached_shard_index(shard: Path, index_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The index of ``shard`` (:func:`index_shard`), read from its cache when the cache was written for this
    shard's absolute path, size and modification time, else built and cached (written atomically).

    A cache that is absent, stale or unreadable is rebuilt; one that cannot be
    written (a read-only folder) gives a warning, and the index is used uncached.
    """
    cache = index_cache_path(shard, index_dir)
    status = shard.stat()
    stamp = np.array([INDEX_VERSION, status.st_size, status.st_mtime_ns], dtype=np.int64)
    source = np.frombuffer(str(shard.resolve()).encode("utf-8"), dtype=np.uint8)
    try:
        with np.load(cache, allow_pickle=False) as saved:
            if np.array_equal(saved["stamp"], stamp) and np.array_equal(saved["source"], source):
                return {name: saved[name] for name in saved.files if name not in ("stamp", "source")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no cache yet, or a damaged one: rebuilt below
    index = index_shard(shard)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, lambda file: np.savez(file, stamp=stamp, source=source, **index))
    except OSError as error:
        warn_at_caller(  # once per folder and caller
            f"shard indexes cannot be cached in {cache.parent} ({error.strerror or error}); they are "
            "rebuilt on every start (set index_dir to a writable folder)"
        )
    return index


class _ShardReader:
    """Images read by index from indexed shards (see the module docstring).

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
        shard, offset, size, keys, captions, labels, has_label = [], [], [], [], [], [], []
        skipped, first_skipped = 0, None
        for number, path in enumerate(self.shard_paths):
            index = cached_shard_index(path, index_dir)
            shard_keys = _Texts(index["key_bytes"], index["key_ends"])
            lacks_image = index["size"] < 0
            lacks_caption = ~index["has_caption"] if need_caption else np.zeros_like(lacks_image)
            incomplete = np.flatnonzero(lacks_image | lacks_caption)
            if incomplete.size:
                row = int(incomplete[0])
                lacks = [what for what, absent in (("image", lacks_image[row]), ("caption", lacks_caption[row]))
                         if absent]
                if on_missing == "error":
                    raise ValueError(
                        f"shard {path}: sample {shard_keys[row]} has no {' and no '.join(lacks)}; "
                        "fix the shard or pass on_missing='skip' to drop such samples"
                    )
                skipped += incomplete.size
                first_skipped = first_skipped or f"{path}: {shard_keys[row]}"
            rows = np.flatnonzero(~(lacks_image | lacks_caption))
            shard.append(np.full(rows.size, number, dtype=np.int32))
            offset.append(index["offset"][rows])
            size.append(index["size"][rows])
            keys.append(shard_keys.take(rows))
            captions.append(_Texts(index["caption_bytes"], index["caption_ends"]).take(rows))
            labels.append(index["label"][rows])
            has_label.append(index["has_label"][rows])
        if skipped:
            warn_at_caller(f"skipped {skipped} incomplete samples (first: {first_skipped})")
        if not sum(part.size for part in shard):
            raise ValueError(f"the shards {[str(p) for p in self.shard_paths]} hold no complete sample")
        self._keys, self._captions = _Texts.concatenate(keys), _Texts.concatenate(captions)
        self._shard = torch.from_numpy(np.concatenate(shard))
        self._offset = torch.from_numpy(np.concatenate(offset))
        self._size = torch.from_numpy(np.concatenate(size))
        labelled = bool(np.concatenate(has_label).all())
        self.labels, self.class_names = self._read_labels(np.concatenate(labels) if labelled else None, class_names)
        self._files: dict[int, int] = {}  # shard number -> file descriptor, read with pread (no shared offset)

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
        return self._offset.numel()

    @property
    def keys(self) -> list[str]:
        """The samples' keys, in order (decoded on each access: the reader keeps them as arrays)."""
        return self._keys.tolist()

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(3, image_size, image_size)``: the shape of one decoded image."""
        return 3, self.image_size, self.image_size

    def __getstate__(self) -> dict:
        """Pickled (and deep-copied) without open files: spawned DataLoader workers open their own."""
        return {**self.__dict__, "_files": {}}

    def __del__(self) -> None:
        for descriptor in getattr(self, "_files", {}).values():
            os.close(descriptor)

    def _image(self, i: int) -> torch.Tensor:
        """Image ``i`` as ``(3, image_size, image_size)`` uint8.

        Read with ``os.pread`` at the image's offset: forked DataLoader workers
        share the parent's file descriptors, and pread moves no shared file position.
        """
        shard = int(self._shard[i])
        descriptor = self._files.get(shard)
        if descriptor is None:
            descriptor = self._files[shard] = os.open(self.shard_paths[shard], os.O_RDONLY)
        data = os.pread(descriptor, int(self._size[i]), int(self._offset[i]))
        try:
            return read_image(io.BytesIO(data), self.image_size)
        except OSError as error:
            raise ValueError(f"shard {self.shard_paths[shard]}: the image of sample {self._keys[i]} cannot be decoded: {error}") from error

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Images at ``index`` (any shape, or a slice), float32 in [0, 1]: ``index.shape + (3, image_size, image_size)``."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index)
        flat = index.reshape(-1).tolist()
        size = self.image_size
        if not flat:
            return torch.empty(*index.shape, 3, size, size)
        images = torch.stack([self._image(i) for i in flat])
        return images.reshape(*index.shape, 3, size, size).float() / 255


    def _rows(self, image_index: torch.Tensor) -> _ShardReader:
        """A copy holding the samples at ``image_index (k,)`` only, in that order (nothing is re-read)."""
        image_index = torch.as_tensor(image_index).long()
        part = copy.copy(self)
        part._files = {}
        rows = image_index.numpy()
        part._keys, part._captions = self._keys.take(rows), self._captions.take(rows)
        part._shard, part._offset, part._size = self._shard[image_index], self._offset[image_index], self._size[image_index]
        part.labels = None if self.labels is None else self.labels[image_index]
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
        self._caption_fields()

    def _caption_fields(self) -> None:
        self.caption_image = torch.arange(len(self))
        self.groups = None

    @property
    def captions(self) -> list[str]:
        """The n captions, caption i of image i (decoded on each access: tokenise them once)."""
        return self._captions.tolist()

    def subset(self, image_index: torch.Tensor) -> ShardedImageText:
        """The pairs at ``image_index (k,)`` (distinct), re-indexed; reads nothing."""
        part = self._rows(image_index)
        part._caption_fields()
        return part

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
        return self._rows(image_index)

    def split(self, fraction: float, seed: int = 0) -> tuple[ShardedImages, ShardedImages]:
        """A seeded random split into ``(1 - fraction, fraction)`` parts, as :meth:`ArrayDataset.split`."""
        first, second = random_split(len(self), fraction, seed)
        return self.subset(first), self.subset(second)

    def load(self) -> ArrayDataset:
        """Every image decoded into memory: ``ArrayDataset(inputs (n, 3, S, S), labels)`` (probes on a small part)."""
        return ArrayDataset(self[torch.arange(len(self))], self.labels)
