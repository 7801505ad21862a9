"""MoCo under DDP: two gloo ranks with half the batch each equal one process with the whole batch.

One spawn of two processes runs both cases. Each rank wraps a small MoCo
(no BatchNorm, so the ranks' halves do not change the statistics) in
``DistributedDataParallel`` and takes two SGD steps on its half of two fixed
global batches. The parent runs the same steps on the whole batches in one
process and compares the losses and every weight and buffer: the online and
momentum encoders, and for MoCo v2 the queue, which must hold the keys of the
whole global batch in the same order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shared_checks import free_port, join_ranks, leaving_process_group
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from contrastive_seq.losses import MoCoLoss
from contrastive_seq.methods.moco import MoCo
from contrastive_seq.models import MLPHead

WORLD, SAMPLES, STEPS = 2, 8, 2
CASES = ("moco_v2_symmetric_queue", "moco_v3")


class Flat(nn.Sequential):
    """A linear encoder of 1x4x4 images: ``(N, 1, 4, 4) -> (N, 6)``."""

    output_dim = 6

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(16, 6))


def make(case: str) -> MoCo:
    torch.manual_seed(0)
    projection = MLPHead(6, 8, 5, batch_norm=False)
    if case == "moco_v3":
        predictor = MLPHead(5, 8, 5, batch_norm=False)
        return MoCo(Flat(), projection, MoCoLoss(), predictor=predictor, queue_size=None, symmetric=True, base_momentum=0.5)
    return MoCo(Flat(), projection, MoCoLoss(), queue_size=4 * SAMPLES, symmetric=True, base_momentum=0.5)


def global_batch(step: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return {"views": torch.rand(2, SAMPLES, 1, 4, 4, generator=generator)}


def run(case: str, rank: int = 0, world: int = 1) -> tuple[list[float], dict[str, torch.Tensor]]:
    """``STEPS`` SGD steps on this rank's share of the global batches; returns the losses and the state."""
    method = make(case)
    module = DistributedDataParallel(method) if world > 1 else method
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    share = slice(rank * SAMPLES // world, (rank + 1) * SAMPLES // world)
    losses = []
    for step in range(STEPS):
        batch = {"views": global_batch(step)["views"][:, share]}
        optimizer.zero_grad()
        loss = module(batch).loss
        loss.backward()
        optimizer.step()
        method.after_step(step)
        losses.append(loss.item())
    return losses, method.state_dict()


def _worker(rank: int, port: int, output: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    with leaving_process_group():
        torch.save({case: run(case, rank, WORLD) for case in CASES}, output / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    output = tmp_path_factory.mktemp("moco_ddp")
    context = mp.spawn(_worker, args=(free_port(), output), nprocs=WORLD, join=False)
    join_ranks(context)
    return [torch.load(output / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_equal_one_process_with_the_whole_batch(case, rank_results):
    single_losses, single_state = run(case)
    for rank in range(WORLD):
        rank_losses, rank_state = rank_results[rank][case]
        assert set(rank_state) == set(single_state)
        for name, value in single_state.items():
            torch.testing.assert_close(rank_state[name], value, rtol=1e-5, atol=1e-6, msg=f"{case}: {name}")
    mean_losses = [sum(rank_results[r][case][0][step] for r in range(WORLD)) / WORLD for step in range(STEPS)]
    assert mean_losses == pytest.approx(single_losses, rel=1e-5)
    if case.endswith("queue"):
        assert int(single_state["queue.pointer"]) == (2 * SAMPLES * STEPS) % (4 * SAMPLES)
