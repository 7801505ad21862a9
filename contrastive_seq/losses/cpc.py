"""CPC's per-step InfoNCE (van den Oord et al. 2018) on the shared loss core.

For each step k = 1..K, sequence b and frame t < T - k, the prediction
``p_k[b, t]`` (from the context at t) scores the true future frame
``z[b, t + k]`` against ``num_negatives`` frames drawn for position
``(b, t + k)``:

    loss_k = mean_{b, t} [ log( exp(s(p, z_pos)) + sum_n exp(s(p, z_n)) ) - s(p, z_pos) ]

and the loss is the mean of loss_k over k. With scores that carry no
information (all equal) every term is ln(1 + num_negatives).

Negatives (drawn once per batch, shared by every k, as in CPC_audio):

- ``"sequence"``: frames of the same sequence;
- ``"batch"``: frames of any sequence in the batch;
- ``"speaker"``: frames of sequences of the same speaker / session (the batch
  labels; pair with :class:`~contrastive_seq.sampling.sequences.SpeakerGroupedSampler`
  so that each speaker has several sequences in the batch).

Negatives are drawn uniformly with replacement and may hit the positive
frame itself, as in CPC_audio.
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.infonce import ContrastiveCore, reduce_terms
from contrastive_seq.losses.terms import info_nce_from_logits
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_labels

NEGATIVE_SOURCES = ("sequence", "batch", "speaker")


def _uniform_below(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` elementwise, shape of ``high``."""
    return (torch.rand(high.shape, generator=generator) * high).long().clamp(max=high - 1)


def draw_negatives(
    batch: int,
    frames: int,
    num_negatives: int,
    source: str,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flat frame indices ``(batch, frames, num_negatives)`` into ``targets.reshape(batch * frames, dim)``.

    Entry ``[b, t]`` holds the negatives of target position ``(b, t)``; see the
    module docstring for ``source``. ``labels (batch,)`` are needed by ``"speaker"``.
    """
    shape = (batch, frames, num_negatives)
    time = torch.randint(frames, shape, generator=generator)
    if source == "batch":
        row = torch.randint(batch, shape, generator=generator)
    elif source == "sequence":
        row = torch.arange(batch).view(batch, 1, 1).expand(shape)
    else:
        labels = labels.cpu()
        order = torch.argsort(labels, stable=True)
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        first = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
        group_first = first[inverse].view(batch, 1, 1).expand(shape)
        group_count = counts[inverse].view(batch, 1, 1).expand(shape)
        row = order[group_first + _uniform_below(group_count, generator)]
    return row * frames + time


class CPCLoss(nn.Module):
    """Per-step InfoNCE of CPC predictions against future frames.

    ``forward(predictions, targets, generator, labels=None)``:

    - ``predictions``: ``(K, batch, frames, dim)``, entry ``[k - 1, b, t]`` predicts ``targets[b, t + k]``;
    - ``targets``: ``(batch, frames, dim)`` encoder frames;
    - ``generator``: draws the negatives;
    - ``labels``: ``(batch,)`` speakers, for ``negatives="speaker"``.

    Returns a :class:`LossOutput` with parts ``accuracy`` (mean over k),
    ``accuracy_k<k>`` and ``loss_k<k>`` per step, ``alignment``,
    ``uniformity`` and ``temperature``.

    Args:
        num_negatives: negatives per prediction.
        negatives: ``"sequence"``, ``"batch"`` or ``"speaker"``.
        similarity, temperature, learnable_temperature: those of the shared
            :class:`ContrastiveCore` (the bilinear W_k live in the predictors,
            so the core scores ``prediction . frame`` with ``"dot"`` by default).
    """

    def __init__(
        self,
        num_negatives: int = 128,
        negatives: str = "batch",
        similarity: str = "dot",
        temperature: float = 1.0,
        learnable_temperature: bool = False,
    ):
        super().__init__()
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"num_negatives must be a positive int, got {num_negatives!r}")
        if negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {negatives!r}")
        if similarity == "bilinear":
            raise ValueError(
                "similarity='bilinear' belongs to the predictors (StepPredictors kind='bilinear'); use 'dot'"
            )
        self.core = ContrastiveCore(similarity, temperature, learnable_temperature)
        self.num_negatives = num_negatives
        self.negatives = negatives

    def forward(
        self,
        predictions: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> LossOutput:
        if not isinstance(targets, torch.Tensor) or targets.dim() != 3:
            raise ValueError(f"targets must have shape (batch, frames, dim), got {getattr(targets, 'shape', targets)}")
        batch, frames, dim = targets.shape
        shaped = isinstance(predictions, torch.Tensor) and predictions.dim() == 4
        if not shaped or predictions.shape[1:] != targets.shape:
            raise ValueError(
                f"predictions must have shape (K, {batch}, {frames}, {dim}) like targets, "
                f"got {tuple(getattr(predictions, 'shape', ()))}"
            )
        steps = predictions.shape[0]
        if frames <= steps:
            raise ValueError(
                f"targets has {frames} frames; predicting K={steps} steps ahead needs at least {steps + 1}"
            )
        if self.negatives == "speaker":
            if labels is None:
                raise ValueError("negatives='speaker' needs labels (batch,): the speaker of each sequence")
            check_labels("labels", labels, batch)
        index = draw_negatives(batch, frames, self.num_negatives, self.negatives, generator, labels)
        negatives = targets.reshape(batch * frames, dim)[index.to(targets.device)]  # (batch, frames, N, dim)
        similarity, scale = self.core.similarity, self.core.temperature.scale()
        outputs = []
        for k in range(1, steps + 1):
            query = predictions[k - 1, :, : frames - k].reshape(-1, dim)
            positive = similarity.paired(query, targets[:, k:].reshape(-1, dim)).unsqueeze(1)
            negative = similarity.batched(query, negatives[:, k:].reshape(-1, self.num_negatives, dim))
            logits = torch.cat([positive, negative], dim=1) * scale
            target = torch.zeros(len(query), dtype=torch.long, device=query.device)
            outputs.append(reduce_terms(info_nce_from_logits(logits, target), self.core.temperature(), True))
        averaged = ("accuracy", "alignment", "uniformity")
        parts = {name: torch.stack([out.parts[name] for out in outputs]).mean() for name in averaged}
        parts["temperature"] = outputs[0].parts["temperature"]
        for k, out in enumerate(outputs, start=1):
            parts[f"accuracy_k{k}"] = out.parts["accuracy"]
            parts[f"loss_k{k}"] = out.loss
        return LossOutput(torch.stack([out.loss for out in outputs]).mean(), parts)
