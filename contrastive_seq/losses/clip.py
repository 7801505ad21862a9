"""Image-text losses: CLIP's symmetric InfoNCE (Radford et al. 2021) and SigLIP's sigmoid loss (Zhai et al. 2023).

Both score N paired rows ``image (N, d)`` and ``text (N, d)``; pair i is the
positive, every other pairing a negative. In a distributed run each rank scores
its own rows against the other modality gathered (with gradients) from all
ranks, the positive of local row i sitting at column ``rank * N + i`` (the
"local loss" of open_clip), and the per-rank losses average to the loss of a
single process on the concatenated batch. ``CLIPLoss(block_size=...)`` computes
the logits tile by tile (:mod:`contrastive_seq.losses.tiled`), both directions
from one pass over the tiles in a single process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.infonce import ContrastiveCore, reduce_terms
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import Similarity
from contrastive_seq.losses.terms import check_block_size, info_nce_from_logits
from contrastive_seq.losses.tiled import tiled_clip_info_nce, tiled_info_nce
from contrastive_seq.losses.validation import check_embeddings, check_positive_number, check_same_shape


def _check_pairs(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Validate ``image``, ``text`` (N, d) and return the column of each local row's partner ``(N,)``."""
    check_embeddings("image", image)
    check_embeddings("text", text)
    check_same_shape("image", image, "text", text)
    rows = image.shape[0]
    return torch.arange(rows, device=image.device) + distributed.row_offset(rows)


class CLIPLoss(nn.Module):
    """CLIP's loss: the mean of image->text and text->image cross-entropy.

    ``forward(image (N, d), text (N, d)) -> LossOutput``. Parts: ``accuracy``
    (mean of both directions), ``accuracy_image_to_text``,
    ``accuracy_text_to_image``, ``alignment`` and ``uniformity`` (means of both
    directions; they add up to the loss), ``temperature`` and ``logit_scale``
    (1 / temperature).

    Args:
        block_size: ``None`` materialises the (N, W·N) logits of each
            direction; an int computes them in tiles of that many rows and
            columns (same loss, parts and gradients).
        **core: keyword arguments of :class:`ContrastiveCore`; the defaults are
            CLIP's: cosine similarity, a learnable temperature starting at 0.07
            whose logit scale is clamped to at most 100 (bounds (0.01, 100)).
    """

    def __init__(self, block_size: int | None = None, **core: object):
        super().__init__()
        core.setdefault("temperature", 0.07)
        core.setdefault("learnable_temperature", True)
        core.setdefault("temperature_bounds", (0.01, 100.0))
        self.core = ContrastiveCore(**core)
        self.block_size = check_block_size(block_size, self.core)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:  # noqa: D102
        target = _check_pairs(image, text)
        scale = self.core.temperature.scale()
        temperature = self.core.temperature()
        if not self.core.factorises:  # plain only (checked at construction): any similarity
            image_to_text = self.core.pairwise_logits(image, distributed.gather_with_grad(text))
            text_to_image = self.core.pairwise_logits(distributed.gather_with_grad(image), text).transpose(0, 1)
            terms = (info_nce_from_logits(image_to_text, target), info_nce_from_logits(text_to_image, target))
        else:
            images, all_texts, all_images, texts = self._factors(image, text)
            if self.block_size is None:
                # text rows times image columns: a second product beats reducing a transposed matrix
                terms = (
                    info_nce_from_logits(images @ all_texts.transpose(0, 1), target),
                    info_nce_from_logits(texts @ all_images.transpose(0, 1), target),
                )
            elif not distributed.is_distributed():
                # one pass over the tiles of image @ text.T gives both directions
                terms = tiled_clip_info_nce(images, texts, self.block_size)
            else:
                terms = (
                    tiled_info_nce(images, all_texts, target, block_size=self.block_size),
                    tiled_info_nce(texts, all_images, target, block_size=self.block_size),
                )
        i2t, t2i = (reduce_terms(t, temperature, all_rows_valid=True) for t in terms)
        parts = {
            name: (i2t.parts[name] + t2i.parts[name]) / 2 for name in ("accuracy", "alignment", "uniformity")
        }
        parts["accuracy_image_to_text"] = i2t.parts["accuracy"]
        parts["accuracy_text_to_image"] = t2i.parts["accuracy"]
        parts["temperature"] = temperature
        parts["logit_scale"] = scale
        return LossOutput((i2t.loss + t2i.loss) / 2, parts)

    def _factors(
        self, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logit factors ``(images, all_texts, all_images, texts)``: local ``(N, D)``, gathered ``(W·N, D)``.

        ``images @ all_texts.T`` is image -> text, ``texts @ all_images.T`` text -> image;
        in one process the gathered factors are the local ones, computed once.
        """
        if not distributed.is_distributed():
            images, texts = self.core.logit_factors(image, text)
            return images, texts, images, texts
        images, all_texts = self.core.logit_factors(image, distributed.gather_with_grad(text))
        all_images, texts = self.core.logit_factors(distributed.gather_with_grad(image), text)
        return images, all_texts, all_images, texts


class SigLIPLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss.

    ``forward(image (N, d), text (N, d)) -> LossOutput`` with

        loss = -(1/N) sum_i sum_j log sigmoid(z_ij * (t * s(image_i, text_j) + b)),

    z_ij = +1 for i = j and -1 otherwise, t a logit scale (stored as log t, the
    core's :class:`Temperature` with tau = 1/t) and b a bias. When every logit
    is 0 each pair contributes ln 2, so the loss is N ln 2. Parts: ``accuracy``
    (image -> text top-1 over this rank's rows), ``logit_scale`` and ``bias``.

    Distributed: rank r scores its N local images against all W·N texts and
    divides by its local N; DDP's mean over ranks, (1/W) sum_r (1/N) sum_{i in r} sum_j,
    is then (1/(W·N)) sum over the whole W·N x W·N matrix, the single-process loss.

    Args:
        scale: initial logit scale t > 0 (10 in the paper).
        bias: initial bias b (-10 in the paper).
        learnable: train t and b.
        scale_bounds: ``(min, max)`` of t, applied by clamping in the forward pass.
        similarity: a similarity name or module, as for :class:`ContrastiveCore`.
        dim: embedding dimension, needed by ``"bilinear"``.
    """

    def __init__(
        self,
        scale: float = 10.0,
        bias: float = -10.0,
        learnable: bool = True,
        scale_bounds: tuple[float, float] = (0.01, 100.0),
        similarity: str | Similarity = "cosine",
        dim: int | None = None,
    ):
        super().__init__()
        check_positive_number("scale", scale)
        low, high = (check_positive_number("scale_bounds", b) for b in scale_bounds)
        if not low <= scale <= high:
            raise ValueError(f"scale must lie within scale_bounds {scale_bounds}, got {scale}")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise TypeError(f"bias must be a number, got {type(bias).__name__}")
        if not math.isfinite(bias):
            raise ValueError(f"bias must be a finite number, got {bias}")
        self.core = ContrastiveCore(
            similarity=similarity,
            temperature=1.0 / scale,
            learnable_temperature=learnable,
            temperature_bounds=(1.0 / high, 1.0 / low),
            dim=dim,
        )
        bias_tensor = torch.tensor(float(bias))
        if learnable:
            self.bias = nn.Parameter(bias_tensor)
        else:
            self.register_buffer("bias", bias_tensor)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:  # noqa: D102
        target = _check_pairs(image, text)
        all_text = distributed.gather_with_grad(text)
        logits = self.core.pairwise_logits(image, all_text) + self.bias
        sign = torch.full_like(logits, -1.0).scatter(1, target.unsqueeze(1), 1.0)
        loss = -F.logsigmoid(sign * logits).sum() / image.shape[0]
        with torch.no_grad():
            parts = {
                "accuracy": (logits.argmax(1) == target).float().mean(),
                "logit_scale": self.core.temperature.scale(),
                "bias": self.bias,
            }
        return LossOutput(loss, parts)
