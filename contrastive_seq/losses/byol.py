"""BYOL's regression loss (Grill et al. 2020).

The online network's prediction ``p`` regresses the target network's
projection ``z`` through a stop-gradient, both L2-normalised:

    loss = mean_i || p_i/||p_i|| - sg(z_i)/||z_i|| ||^2 = mean_i (2 - 2 cos(p_i, sg(z_i)))

so it is 0 for aligned rows, 2 for orthogonal and 4 for opposite ones. BYOL
symmetrises by swapping the views; that is the method's job, not the loss's.
Rows are independent: in a distributed run each rank averages its own rows.
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import CosineSimilarity
from contrastive_seq.losses.validation import check_embeddings, check_same_shape


class BYOLLoss(nn.Module):
    """``forward(prediction (N, d), target (N, d)) -> LossOutput`` = ``mean(2 - 2 cos(p, sg(target)))``.

    ``target`` is detached inside: no gradient reaches it. Parts: ``cosine``
    (mean cosine similarity of prediction and target).
    """

    def __init__(self) -> None:
        super().__init__()
        self.similarity = CosineSimilarity()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> LossOutput:
        """Loss of the online ``prediction`` against the (detached) ``target``."""
        check_embeddings("prediction", prediction)
        check_embeddings("target", target)
        check_same_shape("prediction", prediction, "target", target)
        cosine = self.similarity.paired(prediction, target.detach())
        loss = (2 - 2 * cosine).mean()
        return LossOutput(loss, {"cosine": cosine.mean()})
