"""Embedding a whole dataset with a trained method."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def embed_in_batches(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Embed ``inputs (n, ...)`` with ``model.embed`` (a Method) or ``model`` itself, in eval mode.

    Returns ``(n, dim)`` float32 on the CPU; the model's train/eval mode is restored.
    """
    embed = getattr(model, "embed", model)
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        chunks = [embed(inputs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks)
