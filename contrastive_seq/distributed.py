"""The few rank-aware helpers the rest of the library uses.

Every function here is a no-op (or the identity) outside an initialised
process group, so losses call them unconditionally and run the same code on
one CPU and on N GPUs.
"""

from __future__ import annotations

import time
from datetime import timedelta

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns each rank its rows' gradient.

    The backward sums the gradient of the gathered tensor over ranks (every
    rank's loss may depend on every rank's rows) and keeps this rank's slice.
    It uses ``all_reduce`` only, so it works on gloo as well as NCCL.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.narrow(0, dist.get_rank() * ctx.rows, ctx.rows)


def _check_equal_rows(x: torch.Tensor) -> None:
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(
            f"every rank must pass the same number of rows to a gathered loss, got {[int(s) for s in sizes]}"
        )


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (rows, ...) from all ranks, in rank order, keeping gradients.

    Returns ``(world_size * rows, ...)``; outside a process group, ``x`` itself.
    Every rank must pass the same number of rows.
    """
    if not is_distributed():
        return x
    _check_equal_rows(x)
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (rows, ...) from all ranks without a graph (labels, ids)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a copy); ``x`` itself outside a process group."""
    if not is_distributed():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers of ``module`` (BatchNorm statistics), in place; nothing outside a group.

    DDP broadcasts them at the start of each forward, so after a step the other
    ranks hold their own update: evaluation shared among the ranks needs them equal.
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def row_offset(rows: int) -> int:
    """Index of this rank's first row in a tensor gathered by :func:`gather_with_grad`."""
    return rank() * rows


def global_row_mean(values: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-row ``values`` (rows,) over the valid rows of *all* ranks.

    Each rank returns ``sum(local valid values) * world_size / (valid rows on all ranks)``,
    so that the mean of the ranks' results (what DDP's gradient averaging
    computes) equals the mean over the valid rows of the whole global batch.
    ``valid=None`` means every row counts. Raises ``ValueError`` when no row on
    any rank is valid.
    """
    if valid is None:
        return values.mean()  # every rank has the same number of rows
    count = valid.sum().to(values.dtype)
    if is_distributed():
        count = count.detach().clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    if float(count) == 0:
        raise ValueError(
                "no row of the batch has a positive (its labels or positive mask leave every reference without one): "
                "the loss is undefined"
            )
    return torch.where(valid, values, torch.zeros_like(values)).sum() / count


_GROUP_STORE: dict[str, dist.Store] = {}  # the rendezvous store of the group the Trainer created, while it lives


def keep_group_store(store: dist.Store) -> None:
    """Remember the rendezvous ``store`` of the process group just created (for :func:`group_store`)."""
    _GROUP_STORE["store"] = store


def group_store() -> dist.Store | None:
    """The store :func:`keep_group_store` remembered for the current group; ``None`` when none was."""
    return _GROUP_STORE.get("store")


def leave_process_group() -> None:
    """Wait for every rank, then destroy the default process group and drop its store; nothing without one.

    Call it once, after the last collective, on every rank. The barrier matters:
    a rank that destroys its gloo group while a peer is still finishing with it
    can make that peer abort at exit ("terminate called without an active
    exception"), which torchrun reports as a failed run. The store goes with
    the group, while every rank is still there, not at interpreter exit.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        abandon_process_group()


def abandon_process_group() -> None:
    """Destroy the default process group at once (after an error: the peers may be gone) and drop its store."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _GROUP_STORE.clear()


class PeerFailureError(RuntimeError):
    """A collective failed or timed out because another rank froze, died or lost its connection."""


_COLLECTIVE_FAILURES = ("gloo", "nccl", "timed out", "connection reset", "connection closed", "broken pipe")


def is_collective_failure(error: BaseException) -> bool:
    """Whether ``error`` is what a collective raises when a peer is frozen, gone or unreachable.

    ``torch.distributed``'s own errors (``DistError``), or a ``RuntimeError``
    from the backend (gloo raises plain ones: "Timed out waiting 4000ms for
    recv operation", "Connection reset by peer").
    """
    if isinstance(error, dist.DistError):
        return True
    message = str(error).lower()
    return type(error) is RuntimeError and any(marker in message for marker in _COLLECTIVE_FAILURES)


def unanswering_ranks(store: dist.Store, rank: int, world_size: int, wait: float = 5.0) -> list[int] | None:
    """After a failed collective: the ranks that do not check in through the rendezvous ``store`` within ``wait`` s.

    Every rank that calls this sets the key ``alive/<rank>``; a frozen or lost
    rank never does. Returns ``None`` when the store itself does not answer
    (its host, rank 0's process or torchrun's agent, is frozen or gone).
    """
    missing = [other for other in range(world_size) if other != rank]
    try:
        store.set_timeout(timedelta(seconds=wait))
        store.set(f"alive/{rank}", "1")
        deadline = time.monotonic() + wait
        while True:
            missing = [other for other in missing if not store.check([f"alive/{other}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)
    except (RuntimeError, dist.DistError):
        return None


def peer_failure(error: BaseException, store: dist.Store | None, timeout: float) -> PeerFailureError:
    """A :class:`PeerFailureError` for ``error`` (raised by a collective), naming the ranks that no longer answer.

    Args:
        error: what the collective raised (a timeout, a reset connection).
        store: the rendezvous store the ranks share (``None``: the ranks are not probed).
        timeout: the collective timeout in seconds, for the message.
    """
    this = rank()
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    lost = None if store is None else unanswering_ranks(store, this, world_size())
    if store is None:
        who = "the ranks were not probed (the process group was created outside the Trainer)"
    elif lost is None:
        who = "the rendezvous store does not answer either: rank 0 (or torchrun's agent, which hosts it) is frozen or lost"
    elif lost:
        who = f"rank{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))} did not answer: frozen or lost"
    else:
        who = "every rank still answers: a connection between ranks broke"
    return PeerFailureError(
        f"rank {this}: a collective failed or did not complete within collective_timeout={timeout:g} s ({reason}); "
        f"{who}. Under torchrun with --max-restarts the job restarts and resumes from the last checkpoint"
    )
