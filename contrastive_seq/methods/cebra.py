"""CEBRA-style contrastive embedding of time series (Schneider, Lee & Mathis 2023).

A reference window, its positive window (chosen by time, by behaviour, or
both) and a shared set of negative windows are embedded by one encoder and
scored with the decoupled InfoNCE of the loss core: the positive is left out
of the denominator, as in CEBRA.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method


class CEBRA(Method):
    """One encoder for reference, positive and negative windows; InfoNCE against shared negatives.

    Batch (from :class:`contrastive_seq.views.windows.WindowViews`):
    ``{"reference": (N, C, W), "positive": (P, N, C, W), "negative": (M, C, W)}``.

    With ``hybrid=False`` the loss uses positive column 0. With ``hybrid=True``
    the sampler's column 0 is the time positive and column 1 the behaviour
    positive: the behaviour loss scores the first ``behaviour_dimensions``
    embedding dimensions, the time loss all of them, and the two are added
    (CEBRA-Hybrid).

    Args:
        encoder: windows ``(N, C, W) -> (N, D)``, with ``embed_sequence((T, C)) -> (T, D)``.
        loss: the InfoNCE to use (``decoupled=True`` is CEBRA's form).
        hybrid: add a time-contrastive loss to the behaviour loss.
        behaviour_dimensions: leading dimensions the behaviour loss sees in hybrid mode.
    """

    def __init__(self, encoder: nn.Module, loss: InfoNCE, hybrid: bool = False, behaviour_dimensions: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.hybrid = hybrid
        output_dim = encoder.output_dim
        self.behaviour_dimensions = output_dim if behaviour_dimensions is None else behaviour_dimensions
        if not 1 <= self.behaviour_dimensions <= output_dim:
            raise ValueError(f"behaviour_dimensions must lie in [1, {output_dim}], got {behaviour_dimensions}")

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        reference, positive, negative = batch["reference"], batch["positive"], batch["negative"]
        needed = 2 if self.hybrid else 1
        if positive.dim() != 4 or positive.shape[0] < needed:
            raise ValueError(
                f"batch['positive'] must have shape (P >= {needed}, N, C, W), got {tuple(positive.shape)}"
            )
        n = reference.shape[0]
        windows = torch.cat([reference, rearrange(positive[:needed], "p n c w -> (p n) c w"), negative])
        z = self.encoder(windows)
        z_ref, z_pos, z_neg = z[:n], z[n : n + needed * n], z[n + needed * n :]
        if not self.hybrid:
            return self.loss(z_ref, z_pos, z_neg)
        k = self.behaviour_dimensions
        time = self.loss(z_ref, z_pos[:n], z_neg)
        behaviour = self.loss(z_ref[:, :k], z_pos[n:, :k], z_neg[:, :k])
        parts = {f"behaviour_{name}": value for name, value in behaviour.parts.items()}
        parts.update({f"time_{name}": value for name, value in time.parts.items()})
        return LossOutput(behaviour.loss + time.loss, parts)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a whole recording ``(T, C) -> (T, D)``, or windows ``(N, C, W) -> (N, D)``."""
        return self.encoder.embed_sequence(x) if x.dim() == 2 else self.encoder(x)


class MultiSessionCEBRA(Method):
    """One encoder per session into one shared embedding space (CEBRA's multi-session training).

    Batch (from :class:`contrastive_seq.views.windows.MultiSessionWindowViews`),
    for S sessions with B references each::

        {"reference": [(B, C_s, W)], "positive": [(P, B, C_σ(s), W)],
         "negative": [(K, C_s, W)], "positive_session": (S,)}

    Block ``s``: references and negatives embedded by encoder ``s``, positives
    (found in session ``σ(s)`` through the shared behaviour) by encoder
    ``σ(s)``. The loss is the mean over blocks of InfoNCE against the block's
    negatives, so each encoder must place matching behaviour at matching
    points of the shared space.

    Args:
        encoders: one per session, all with the same ``output_dim`` and margins.
        loss: the InfoNCE to use (``decoupled=True`` is CEBRA's form).
    """

    def __init__(self, encoders: list[nn.Module], loss: InfoNCE):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"encoders must hold one encoder per session, at least 2, got {len(encoders)}")
        dims = {encoder.output_dim for encoder in encoders}
        if len(dims) != 1:
            raise ValueError(f"encoders must share one output_dim, got {sorted(dims)}")
        self.encoders = nn.ModuleList(encoders)
        self.loss = loss

    def training_step(self, batch: dict[str, object]) -> LossOutput:  # noqa: D102
        sessions = len(self.encoders)
        if len(batch["reference"]) != sessions:
            raise ValueError(f"batch['reference'] must hold {sessions} session blocks, got {len(batch['reference'])}")
        outputs = []
        for s, encoder in enumerate(self.encoders):
            positive_encoder = self.encoders[int(batch["positive_session"][s])]
            outputs.append(
                self.loss(
                    encoder(batch["reference"][s]),
                    positive_encoder(batch["positive"][s][0]),
                    encoder(batch["negative"][s]),
                )
            )
        loss = torch.stack([out.loss for out in outputs]).mean()
        parts = {name: torch.stack([out.parts[name] for out in outputs]).mean() for name in outputs[0].parts}
        return LossOutput(loss, parts)

    def embed(self, x: torch.Tensor, session: int = 0) -> torch.Tensor:
        """Embed session ``session``'s recording ``(T, C_s) -> (T, D)``."""
        if not 0 <= session < len(self.encoders):
            raise ValueError(f"session must lie in [0, {len(self.encoders)}), got {session}")
        return self.encoders[session].embed_sequence(x)
