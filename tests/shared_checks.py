"""Checks several test modules share: the largest tensor an operation creates, DDP cases against one process,
and how a spawned rank leaves its process group."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from contrastive_seq.distributed import abandon_process_group, leave_process_group

Batch = dict[str, torch.Tensor]


@contextmanager
def leaving_process_group() -> Iterator[None]:
    """Run a rank's body, then leave its process group: after a barrier on success, at once on an error.

    The barrier keeps a fast rank from tearing down gloo under a slower one;
    after an error the peers may be gone, so there is nothing to wait for.
    """
    try:
        yield
    except BaseException:
        abandon_process_group()
        raise
    leave_process_group()


class LargestTensor(TorchDispatchMode):
    """Inside ``with``: records in ``largest`` the element count of the largest tensor any op returns.

    Args:
        floating_only: count floating-point tensors only (activations), not index or mask tensors.
    """

    def __init__(self, floating_only: bool = False) -> None:
        super().__init__()
        self.floating_only = floating_only
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if self.floating_only:
            tensors = [t for t in tensors if t.is_floating_point()]
        self.largest = max([self.largest, *(t.numel() for t in tensors)])
        return out


def save_ddp_case_results(
    rank: int,
    world_size: int,
    init_file: str,
    out_dir: str,
    cases: Sequence[str],
    make_model: Callable[[str], nn.Module],
    rank_batch: Callable[[str, int], Batch],
) -> None:
    """One gloo rank: each case's model under DDP on this rank's batch; saves ``{case: (loss, {parameter: grad})}``.

    ``make_model(case)`` returns a module whose forward gives the scalar loss;
    ``rank_batch(case, rank)`` this rank's share of the case's global batch.
    Run it with ``torch.multiprocessing.spawn``; results go to ``out_dir/rank{rank}.pt``.
    """
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    with leaving_process_group():
        results = {}
        for case in cases:
            model = make_model(case)
            ddp = DistributedDataParallel(model)  # keep it alive: its reducer averages the gradients
            loss = ddp(rank_batch(case, rank))
            loss.backward()
            results[case] = (loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()})
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def assert_ranks_match_one_process(
    out_dir: Path,
    world_size: int,
    cases: Sequence[str],
    make_reference: Callable[[str], nn.Module],
    global_batch: Callable[[str], Batch],
    tolerance: float,
) -> None:
    """The ranks' mean loss and every rank's gradients equal one process's on the whole batch, for every case."""
    ranks = [torch.load(out_dir / f"rank{r}.pt") for r in range(world_size)]
    for case in cases:
        model = make_reference(case)
        single = model(global_batch(case))
        single.backward()
        rank_losses = torch.stack([r[case][0] for r in ranks])
        torch.testing.assert_close(
            rank_losses.mean(), single.detach(), rtol=tolerance, atol=tolerance, msg=f"{case}: loss"
        )
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{case}: {name} has no gradient"
            for r, result in enumerate(ranks):
                torch.testing.assert_close(
                    result[case][1][name],
                    parameter.grad,
                    rtol=tolerance,
                    atol=tolerance,
                    msg=f"{case}: grad of {name}, rank {r}",
                )


#: how long a test's ranks may take: generous, since spawned ranks import torch and more while other work loads
#: the cores (a 2-rank Trainer test took 88 s of a former 90 s limit on a busy 2-core machine); a hang still ends
RANK_TIMEOUT_S = 600


def join_ranks(context: mp.ProcessContext, timeout: float = RANK_TIMEOUT_S) -> None:
    """Wait for the ranks of ``mp.spawn(..., join=False)``; kill them and fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {len(context.processes)}-process run did not finish in {timeout:.0f} s")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for a test's process-group rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
