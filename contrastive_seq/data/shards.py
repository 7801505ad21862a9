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
then read by its index: one seek and one read. The datasets therefore expose
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
import io
import os
import tarfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import torch
from braceexpand import braceexpand

from contrastive_seq.data.image_text import MISSING_POLICIES, ImageTextDataset, read_image

#: extensions of the image member of a sample
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm")
#: a tar archive ends with two zero blocks of 512 bytes
END_OF_ARCHIVE = 1024


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


def _index_shard(path: Path) -> list[_Sample]:
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
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        image_size: int,
        need_caption: bool,
        on_missing: str = "error",
        class_names: Sequence[str] | None = None,
    ):
        if on_missing not in MISSING_POLICIES:
            raise ValueError(f"on_missing must be one of {MISSING_POLICIES}, got {on_missing!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.shard_paths = expand_shard_list(shards)
        self.image_size = image_size
        kept: list[tuple[int, _Sample]] = []
        skipped: list[str] = []
        for number, path in enumerate(self.shard_paths):
            for sample in _index_shard(path):
                lacks = [what for what, absent in (("image", sample.image is None),
                                                   ("caption", need_caption and sample.caption is None)) if absent]
                if not lacks:
                    kept.append((number, sample))
                elif on_missing == "error":
                    raise ValueError(
                        f"shard {path}: sample {sample.key} has no {' and no '.join(lacks)}; "
                        "fix the shard or pass on_missing='skip' to drop such samples"
                    )
                else:
                    skipped.append(f"{path}: {sample.key}")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} incomplete samples (first: {skipped[0]})", stacklevel=3)
        if not kept:
            raise ValueError(f"the shards {[str(p) for p in self.shard_paths]} hold no complete sample")
        self.keys = [sample.key for _, sample in kept]
        self._shard = torch.tensor([number for number, _ in kept], dtype=torch.int32)
        self._offset = torch.tensor([sample.image[0] for _, sample in kept], dtype=torch.int64)
        self._size = torch.tensor([sample.image[1] for _, sample in kept], dtype=torch.int64)
        self._texts = [sample.caption for _, sample in kept]
        self.labels, self.class_names = self._read_labels([sample.label for _, sample in kept], class_names)
        self._files: dict[int, int] = {}  # shard number -> file descriptor, read with pread (no shared offset)

    def _read_labels(
        self, labels: list[int | None], class_names: Sequence[str] | None
    ) -> tuple[torch.Tensor | None, list[str] | None]:
        """``(labels (n,), class names)`` when every sample has a class, else ``(None, None)``."""
        if any(label is None for label in labels):
            return None, None
        tensor = torch.tensor(labels, dtype=torch.long)
        if class_names is None:
            class_names = [str(k) for k in range(int(tensor.max()) + 1)]
        if tensor.min() < 0 or tensor.max() >= len(class_names):
            raise ValueError(f"the shards' classes lie in [{int(tensor.min())}, {int(tensor.max())}], "
                             f"outside the {len(class_names)} class_names")
        return tensor, list(class_names)

    def __len__(self) -> int:
        """Number of images n."""
        return self._offset.numel()

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
            raise ValueError(f"shard {self.shard_paths[shard]}: the image of sample {self.keys[i]} cannot be decoded: {error}") from error

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """Images at ``index`` (any shape) as float32 in [0, 1]: ``index.shape + (3, image_size, image_size)``."""
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
        part.keys = [self.keys[i] for i in image_index.tolist()]
        part._shard, part._offset, part._size = self._shard[image_index], self._offset[image_index], self._size[image_index]
        part._texts = [self._texts[i] for i in image_index.tolist()]
        part.labels = None if self.labels is None else self.labels[image_index]
        return part


class ShardedImageText(_ShardReader):
    """Image-caption pairs in shards (one ``txt`` caption per image), with the interface of
    :class:`~contrastive_seq.data.image_text.ImageTextDataset`.

    ``dataset[index]`` reads and decodes the images at ``index`` (any shape):
    ``index.shape + (3, image_size, image_size)`` float32 in [0, 1]. ``captions``
    (n strings), ``caption_image`` ``(n,)`` (caption i describes image i),
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
    ):
        super().__init__(shards, image_size, need_caption=True, on_missing=on_missing, class_names=class_names)
        self._caption_fields()

    def _caption_fields(self) -> None:
        self.captions: list[str] = self._texts
        self.caption_image = torch.arange(len(self))
        self.groups = None

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
    ):
        super().__init__(shards, image_size, need_caption=False, on_missing=on_missing, class_names=class_names)
