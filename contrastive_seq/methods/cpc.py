"""Contrastive predictive coding (van den Oord et al. 2018) on waveforms or any multichannel time series."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.cpc import CPCLoss
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.models.cpc import StepPredictors, StridedConvEncoder


class CPC(Method):
    """Encode a crop into frames z, summarise them causally into contexts c, predict z_{t+k} from c_t.

    Batch: ``{"crops": (batch, time, channels), "seed": (), "labels": (batch,) optional}``
    from :class:`~contrastive_seq.views.audio.CropViews`; ``seed`` seeds the negatives.

    Args:
        encoder: a :class:`StridedConvEncoder` (``(batch, time, channels) -> (batch, frames, dim)``).
        context: ``(batch, frames, dim) -> (batch, frames, context_dim)``, causal
            (see :func:`~contrastive_seq.models.cpc.make_context_model`).
        predictors: :class:`StepPredictors` from ``context_dim`` to ``dim``, K steps.
        loss: a :class:`CPCLoss`.
    """

    def __init__(self, encoder: StridedConvEncoder, context: nn.Module, predictors: StepPredictors, loss: CPCLoss):
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.predictors = predictors
        self.loss = loss

    @property
    def num_steps(self) -> int:
        """K, the furthest step predicted."""
        return self.predictors.num_steps

    def min_crop_length(self) -> int:
        """Shortest input that gives K + 1 frames: ``receptive_field + K * stride``."""
        return self.encoder.receptive_field + self.num_steps * self.encoder.stride

    def check_crop_length(self, crop_length: int) -> None:
        """Raise naming ``crop_length`` when it is shorter than :meth:`min_crop_length`."""
        if crop_length < self.min_crop_length():
            raise ValueError(
                f"crop_length={crop_length} is shorter than the encoder's receptive field "
                f"({self.encoder.receptive_field}) plus K={self.num_steps} steps of stride {self.encoder.stride} "
                f"= {self.min_crop_length()} time points"
            )

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        crops = batch["crops"]
        self.check_crop_length(crops.shape[1])
        z = self.encoder(crops)
        predictions = self.predictors(self.context(z))
        generator = torch.Generator().manual_seed(int(batch["seed"]))
        return self.loss(predictions, z, generator, batch.get("labels"))

    def embed_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Context vectors per frame: ``(batch, time, channels) -> (batch, frames, context_dim)``."""
        return self.context(self.encoder(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Context vectors averaged over frames: ``(batch, time, channels) -> (batch, context_dim)``."""
        return self.embed_frames(x).mean(1)

    def feature_networks(self) -> dict[str, nn.Module]:
        """The context model: its outputs c_t are the representation the CPC paper probes."""
        return {"context": self.context}
