"""SwAV's swapped prediction (Caron et al. 2020): codes from Sinkhorn-Knopp on one crop, predicted from the others.

For the scores ``s = z^T c`` of B samples against K prototypes (unit vectors),
Sinkhorn-Knopp finds soft codes ``Q (B, K)`` close to ``exp(s / epsilon)``
whose prototypes share the batch equally:

    Q <- exp(s / epsilon) / sum(exp(s / epsilon))
    repeat: Q_k <- Q_k / (K sum_b Q_bk)   (each prototype's column sums to 1/K)
            Q_b <- Q_b / (B sum_k Q_bk)   (each sample's row sums to 1/B)
    codes = B Q                             (each row a distribution over prototypes)

In a distributed run the sums over samples (the total and each prototype's
column) are all-reduced, B is the global batch, and each rank gets the rows
of its own samples of what a single process computes on the global batch.
The loss of crop v against the codes q_i of global crop i is the
cross-entropy ``-mean_b sum_k q_ibk log softmax(s_vb / temperature)_k``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.validation import check_embeddings, check_positive_number


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over ranks (no graph; codes carry no gradient)."""
    if distributed.is_distributed():
        dist.all_reduce(x)
    return x


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Soft codes ``(B, K)`` of ``scores (B, K)`` (see the module docstring), each row summing to 1.

    ``B`` rows are this rank's; the column sums run over every rank's rows.
    """
    q = torch.exp(scores.float() / epsilon)
    batch = _global_sum(torch.tensor(float(q.shape[0]), device=q.device))
    q /= _global_sum(q.sum())
    prototypes = q.shape[1]
    for _ in range(iterations):
        q /= _global_sum(q.sum(0, keepdim=True)) * prototypes
        q /= q.sum(1, keepdim=True) * batch
    return (q * batch).to(scores.dtype)


class SwAVLoss(nn.Module):
    """Swapped prediction over G global crops (codes) and L local crops (predictions only).

    ``forward(global_scores (G, N, K), local_scores (L, N, K) | None, queue_scores (G, Q, K) | None)``:
    for each global crop i, codes ``q_i = sinkhorn_knopp(sg(global_scores[i]))``
    (computed with the queue's rows appended below this batch's and then
    dropped, when a queue is given); the loss is

        mean_i  sum_{v != i} CE(q_i, scores_v) / (G + L - 1)

    over every other crop v, global or local. Parts: ``entropy`` (mean entropy
    of the codes, nats). Each rank averages its own rows; with equal batches
    DDP's average gives the loss of the global batch, and the codes are those
    of the global batch (sums over ranks).

    Args:
        temperature: of the predictions' softmax, > 0 (SwAV: 0.1).
        sinkhorn_iterations: >= 1 (SwAV: 3).
        epsilon: of the codes, > 0 (SwAV: 0.05).
    """

    def __init__(self, temperature: float = 0.1, sinkhorn_iterations: int = 3, epsilon: float = 0.05):
        super().__init__()
        self.temperature = check_positive_number("temperature", temperature)
        self.epsilon = check_positive_number("epsilon", epsilon)
        if isinstance(sinkhorn_iterations, bool) or not isinstance(sinkhorn_iterations, int) or sinkhorn_iterations < 1:
            raise ValueError(f"sinkhorn_iterations must be a positive int, got {sinkhorn_iterations!r}")
        self.sinkhorn_iterations = sinkhorn_iterations

    def forward(
        self,
        global_scores: torch.Tensor,
        local_scores: torch.Tensor | None = None,
        queue_scores: torch.Tensor | None = None,
    ) -> LossOutput:
        """Loss of the crops' prototype scores (see the class docstring)."""
        check_embeddings("global_scores", global_scores, rank=3)
        crops = global_scores
        if local_scores is not None:
            check_embeddings("local_scores", local_scores, rank=3)
            if local_scores.shape[1:] != global_scores.shape[1:]:
                raise ValueError(
                    f"local_scores must have shape (L, {global_scores.shape[1]}, {global_scores.shape[2]}) "
                    f"like global_scores, got {tuple(local_scores.shape)}"
                )
            crops = torch.cat([global_scores, local_scores])
        if queue_scores is not None:
            check_embeddings("queue_scores", queue_scores, rank=3)
            if queue_scores.shape[0] != global_scores.shape[0] or queue_scores.shape[2] != global_scores.shape[2]:
                raise ValueError(
                    f"queue_scores must have shape ({global_scores.shape[0]}, Q, {global_scores.shape[2]}), "
                    f"got {tuple(queue_scores.shape)}"
                )
        rows = global_scores.shape[1]
        log_predictions = torch.log_softmax(crops / self.temperature, dim=2)  # (G + L, N, K)
        total, entropy = global_scores.new_zeros(()), global_scores.new_zeros(())
        for i in range(global_scores.shape[0]):
            scores = global_scores[i].detach()
            if queue_scores is not None:
                scores = torch.cat([scores, queue_scores[i].detach()])
            codes = sinkhorn_knopp(scores, self.sinkhorn_iterations, self.epsilon)[:rows]
            others = [v for v in range(crops.shape[0]) if v != i]
            cross_entropy = -(codes * log_predictions[others]).sum(2).mean(1)  # (G + L - 1,)
            total = total + cross_entropy.sum() / len(others)
            entropy = entropy - (codes * codes.clamp_min(1e-12).log()).sum(1).mean()
        count = global_scores.shape[0]
        return LossOutput(total / count, {"entropy": entropy / count})
