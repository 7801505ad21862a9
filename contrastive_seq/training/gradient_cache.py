"""Gradient cache: a contrastive batch of any size with the activation memory of one chunk.

A contrastive loss couples every embedding of the batch, so it cannot be
split into micro-batches whose gradients add up, as a mean of per-sample
losses can. The gradient cache (Gao et al. 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup") splits the computation
instead:

1. embed the batch chunk by chunk without a graph, keeping only the
   embeddings ``(B, d)``;
2. compute the loss on those embeddings (as graph leaves) and its gradient
   with respect to them, and to the loss's own parameters (a learnable
   temperature, a bilinear weight); with a tiled loss
   (``block_size=...``) this step too needs O(B · d + block²) memory, not O(B²);
3. embed each chunk again, now with a graph, and back-propagate that chunk's
   slice of the embedding gradient into the encoder's parameters.

Peak memory is the activations of one chunk plus ``(B, d)`` embeddings and
their gradient. The parameter gradients are those of one backward pass
through the whole batch, as long as a chunk's second run computes exactly
what its first run did and chunks do not interact inside the encoder:

- random streams (dropout, stochastic depth) are replayed per chunk: the
  state of every global stream is saved before a chunk's first run and
  restored before its second, and the streams end where one pass would
  leave them;
- BatchNorm in training mode normalises over its chunk rather than the batch
  and would update its running statistics twice: it is refused (use
  GroupNorm / LayerNorm, SyncBatchNorm is no cure, or put BatchNorm in eval mode);
- nothing besides the embeddings may carry gradient from the encoder to the
  loss (say, an auxiliary loss on hidden activations);
- under fp16 autocast the embedding gradients reach the encoder unscaled
  (the loss scaler multiplies only the final product): prefer bf16 or fp32.

The result is a :class:`LossOutput` like any method's: ``loss.backward()``
(under the Trainer, with DDP and a gradient scaler too) writes the cached
gradients into the parameters, once per parameter, so DDP's hooks fire once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.seeding import capture_random_state, restore_random_state

Encode = Callable[[torch.Tensor], torch.Tensor]


class _CachedGradients(torch.autograd.Function):
    """Identity on the loss value; its backward hands each parameter its cached gradient times the upstream one."""

    @staticmethod
    def forward(ctx, loss, gradients, *parameters):  # noqa: D102
        ctx.gradients = gradients
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return (None, None, *(None if g is None else g * grad.to(g.dtype) for g in ctx.gradients))


def _add(total: torch.Tensor | None, part: torch.Tensor | None) -> torch.Tensor | None:
    if part is None:
        return total
    return part if total is None else total + part


class GradientCache:
    """Compute a contrastive loss over a large batch chunk by chunk (see the module docstring).

    ``cache(model, towers, loss) -> LossOutput``:

    - ``model``: the module whose trainable parameters receive gradients
      (a :class:`Method` passes itself); checked for BatchNorm in training mode;
    - ``towers``: ``[(encode, inputs), ...]``, one per encoder, where
      ``encode(inputs[i:j]) -> (j - i, d)`` embeds a chunk of ``inputs (B, ...)``
      (e.g. images and texts for CLIP; all views, flattened, for SimCLR); a
      frozen tower (LiT) is embedded once and not re-run;
    - ``loss``: ``loss([embeddings (B, d) of each tower]) -> LossOutput``.

    Inside :meth:`Method.training_step`::

        return self.cache(self, [(lambda x: self.projection(self.encoder(x)), rows)],
                          lambda z: self.loss(rearrange(z[0], "(v n) d -> v n d", v=n_views)))

    Args:
        chunk_size: rows embedded at once (the last chunk may be smaller).
    """

    def __init__(self, chunk_size: int):
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def __call__(
        self,
        model: nn.Module,
        towers: Sequence[tuple[Encode, torch.Tensor]],
        loss: Callable[[list[torch.Tensor]], LossOutput],
    ) -> LossOutput:
        """The loss of the whole batch, whose ``backward`` gives every parameter its whole-batch gradient."""
        self._check(model, towers)
        parameters = [p for p in model.parameters() if p.requires_grad]
        states, embeddings = [], []  # per tower: the random streams before each chunk, the embeddings
        with torch.no_grad():
            for encode, inputs in towers:
                states.append([])
                parts = []
                for chunk in inputs.split(self.chunk_size):
                    states[-1].append(capture_random_state())
                    parts.append(encode(chunk))
                embeddings.append(torch.cat(parts))
        after = capture_random_state()
        leaves = [z.detach().requires_grad_() for z in embeddings]
        with torch.enable_grad():
            output = loss(leaves)
            if not isinstance(output, LossOutput):
                raise TypeError(f"loss must return a LossOutput, got {type(output).__name__}")
            grads = torch.autograd.grad(output.loss, leaves + parameters, allow_unused=True)
        embedding_grads, parameter_grads = grads[: len(leaves)], list(grads[len(leaves) :])
        for (encode, inputs), grad, tower_states in zip(towers, embedding_grads, states):
            if grad is None:  # the loss ignores this tower
                continue
            chunks = zip(inputs.split(self.chunk_size), grad.split(self.chunk_size), tower_states)
            for chunk, chunk_grad, state in chunks:
                restore_random_state(state)
                with torch.enable_grad():
                    z = encode(chunk)
                if not z.requires_grad:  # a frozen tower (LiT's locked text tower)
                    break
                chunk_grads = torch.autograd.grad(z, parameters, chunk_grad.to(z.dtype), allow_unused=True)
                parameter_grads = [_add(total, part) for total, part in zip(parameter_grads, chunk_grads)]
        restore_random_state(after)
        return LossOutput(_CachedGradients.apply(output.loss.detach(), parameter_grads, *parameters), output.parts)

    @staticmethod
    def _check(model: nn.Module, towers: Sequence[tuple[Encode, torch.Tensor]]) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm) and module.training:
                raise ValueError(
                    f"model.{name} is a {type(module).__name__} in training mode: under a gradient cache it "
                    "would normalise each chunk on its own and update its statistics twice; use GroupNorm or "
                    "LayerNorm, or put it in eval mode"
                )
        if not towers:
            raise ValueError("towers must hold at least one (encode, inputs) pair")
        for i, tower in enumerate(towers):
            if not (isinstance(tower, tuple) and len(tower) == 2 and callable(tower[0])):
                raise TypeError(f"towers[{i}] must be a pair (encode, inputs), got {type(tower).__name__}")
            if not isinstance(tower[1], torch.Tensor) or tower[1].dim() == 0 or tower[1].shape[0] == 0:
                raise ValueError(f"towers[{i}] inputs must be a tensor with a non-empty batch dimension")
