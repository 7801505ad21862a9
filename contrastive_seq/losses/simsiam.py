"""SimSiam's loss (Chen & He 2021): a prediction's negative cosine similarity to the other view's stopped projection.

    loss = -mean_i cos(p_i, sg(z_i))

in [-1, 1]; -1 when every prediction points along its target. SimSiam
symmetrises by swapping the views; that is the method's job, not the loss's.
Rows are independent: in a distributed run each rank averages its own rows
(equal per-rank batches give the global mean after DDP's averaging).
"""

from __future__ import annotations

import torch
from torch import nn

from contrastive_seq.losses.output import LossOutput
from contrastive_seq.losses.similarity import CosineSimilarity
from contrastive_seq.losses.validation import check_embeddings, check_same_shape


class SimSiamLoss(nn.Module):
    """``forward(prediction (N, d), target (N, d)) -> LossOutput`` = ``-mean cos(p, sg(target))``.

    ``target`` is detached inside. Parts: ``cosine`` (mean cosine similarity).
    """

    def __init__(self) -> None:
        super().__init__()
        self.similarity = CosineSimilarity()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> LossOutput:
        """Loss of ``prediction`` against the (detached) ``target``."""
        check_embeddings("prediction", prediction)
        check_embeddings("target", target)
        check_same_shape("prediction", prediction, "target", target)
        cosine = self.similarity.paired(prediction, target.detach()).mean()
        return LossOutput(-cosine, {"cosine": cosine})
