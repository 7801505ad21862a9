"""Two CPU ranks under DDP give the loss and gradients of one process on the whole batch.

One spawn of two gloo processes runs every case: each rank feeds its slice of a
fixed global batch through a small shared linear model (and the loss, whose
learnable temperature / bias are parameters too) wrapped in
``DistributedDataParallel``, then writes its loss and averaged gradients to a
file. The parent computes the same model on the concatenated batch in one
process and compares: mean of the rank losses = single loss, every rank's
gradient = single gradient (float64, 1e-5).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp
from shared_checks import assert_ranks_match_one_process, save_ddp_case_results
from torch import nn

from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.supcon import SupCon

WORLD = 2
SAMPLES = 8  # global batch; each rank gets SAMPLES // WORLD
IN_DIM, TEXT_DIM, OUT_DIM = 6, 7, 5
TOL = 1e-5
CASES = (
    "ntxent_2_views",
    "ntxent_3_views",
    "supcon_views",
    "supcon_single_view",
    "clip",
    "siglip",
    "infonce",
    "moco",
)


def _global_batch(case: str) -> dict[str, torch.Tensor]:
    """The fixed global batch of a case; tensors with a leading view axis are ``(V, N, ...)``."""
    generator = torch.Generator().manual_seed(CASES.index(case))

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    if case.startswith("ntxent"):
        return {"views": randn(2 if case == "ntxent_2_views" else 3, SAMPLES, IN_DIM)}
    if case == "supcon_views":
        return {"views": randn(2, SAMPLES, IN_DIM), "labels": torch.randint(0, 3, (SAMPLES,), generator=generator)}
    if case == "supcon_single_view":
        # rank 0's rows all have a positive, rank 1 has one: the global mean must weight by valid rows
        return {"views": randn(SAMPLES, IN_DIM), "labels": torch.tensor([0, 0, 1, 1, 0, 2, 3, 4])}
    if case in ("clip", "siglip"):
        return {"image": randn(SAMPLES, IN_DIM), "text": randn(SAMPLES, TEXT_DIM)}
    return {"query": randn(SAMPLES, IN_DIM), "positive": randn(SAMPLES, IN_DIM)}


def _rank_slice(batch: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s samples: along dim 1 of ``(V, N, d)`` views, dim 0 otherwise."""
    rows = SAMPLES // WORLD
    return {
        name: x.narrow(1 if name == "views" and x.dim() == 3 else 0, rank * rows, rows) for name, x in batch.items()
    }


class _Harness(nn.Module):
    """A linear encoder (two for image-text) and the case's loss; ``forward(batch) -> loss``."""

    def __init__(self, case: str):
        super().__init__()
        torch.manual_seed(0)
        self.case = case
        self.encoder = nn.Linear(IN_DIM, OUT_DIM)
        if case in ("clip", "siglip"):
            self.text_encoder = nn.Linear(TEXT_DIM, OUT_DIM)
        self.loss = {
            "ntxent_2_views": NTXent,
            "ntxent_3_views": NTXent,
            "supcon_views": SupCon,
            "supcon_single_view": SupCon,
            "clip": CLIPLoss,
            "siglip": SigLIPLoss,
            "infonce": InfoNCE,
            "moco": MoCoLoss,
        }[case]()
        self.double()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.case.startswith("ntxent"):
            return self.loss(self.encoder(batch["views"])).loss
        if self.case.startswith("supcon"):
            return self.loss(self.encoder(batch["views"]), batch["labels"]).loss
        if self.case in ("clip", "siglip"):
            return self.loss(self.encoder(batch["image"]), self.text_encoder(batch["text"])).loss
        # MoCoLoss detaches the key itself, so the encoder is trained through the query only
        return self.loss(self.encoder(batch["query"]), self.encoder(batch["positive"])).loss


def _rank_batch(case: str, rank: int) -> dict[str, torch.Tensor]:
    return _rank_slice(_global_batch(case), rank)


def test_ddp_on_two_ranks_matches_one_process(tmp_path: Path) -> None:
    args = (WORLD, str(tmp_path / "init"), str(tmp_path), CASES, _Harness, _rank_batch)
    mp.spawn(save_ddp_case_results, args=args, nprocs=WORLD, join=True)
    assert_ranks_match_one_process(tmp_path, WORLD, CASES, _Harness, _global_batch, TOL)
