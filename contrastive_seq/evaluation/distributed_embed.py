"""Evaluation across ranks: each rank embeds its share of the rows, every rank gets all of them.

Embedding is what costs in evaluation (a forward pass over every test and
training image); the scores on the embeddings are cheap by comparison. Here
rank r of W embeds rows ``[n·r // W, n·(r+1) // W)`` (contiguous, sizes
differing by one at most) and the parts are gathered in rank order, so every
rank holds the ``(n, dim)`` embeddings one process would have computed. kNN
then scores each rank's share of the test rows against the whole training
set and sums the correct answers; the linear probe is fitted once, on rank 0,
and its accuracy broadcast. The results equal one process's (the test runs 2
gloo ranks against one process). Outside a process group every function is
its one-process version.

Every rank must call these functions (they hold collectives), as the
Trainer's ``evaluate`` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from contrastive_seq import distributed
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.probes import knn_accuracy, linear_probe_accuracy


class Indexable(Protocol):
    """What rows are taken from: a tensor ``(n, ...)`` or a dataset indexed by index tensors."""

    def __len__(self) -> int: ...  # noqa: D105

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor: ...  # noqa: D105


def rank_rows(num_rows: int) -> torch.Tensor:
    """``(rows,)`` the indices this rank evaluates: ``[n·r // W, n·(r+1) // W)``."""
    rank, world = distributed.rank(), distributed.world_size()
    return torch.arange(num_rows * rank // world, num_rows * (rank + 1) // world)


class RowsOf:
    """The rows ``rows (k,)`` of ``data``, read only when sliced: ``view[a:b] = data[rows[a:b]]``.

    Lets :func:`~contrastive_seq.evaluation.embeddings.embed_in_batches` run over a
    rank's share of a dataset that decodes on reading (shards), one batch at a time.
    """

    def __init__(self, data: Indexable, rows: torch.Tensor):
        self.data = data
        self.rows = rows

    def __len__(self) -> int:
        return self.rows.numel()

    def __getitem__(self, index: slice) -> torch.Tensor:
        return self.data[self.rows[index]]


def _collective_device() -> torch.device:
    """Where tensors must be for the process group's collectives (NCCL: this rank's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def gather_rows(part: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Every rank's ``part`` (its :func:`rank_rows` of ``num_rows``) concatenated in rank order: ``(num_rows, ...)``.

    Parts may differ in length by one row (they are padded for the gather).
    Returned on ``part``'s device; ``part`` itself outside a process group.
    """
    if not distributed.is_distributed():
        return part
    expected = rank_rows(num_rows).numel()
    if part.shape[0] != expected:
        raise ValueError(f"part must hold this rank's {expected} rows of {num_rows}, got {part.shape[0]}")
    world = distributed.world_size()
    longest = -(-num_rows // world)
    padded = part.new_zeros((longest, *part.shape[1:]), device=_collective_device())
    padded[: part.shape[0]] = part
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    sizes = [num_rows * (r + 1) // world - num_rows * r // world for r in range(world)]
    return torch.cat([g[:size] for g, size in zip(gathered, sizes)]).to(part.device)


def across_ranks(embed: Callable[[Indexable], torch.Tensor], inputs: Indexable) -> torch.Tensor:
    """``embed(inputs)`` ``(n, dim)`` computed as ``embed`` of each rank's rows, gathered on every rank.

    Args:
        embed: maps a sliceable of rows (``len`` and ``[a:b]``) to their embeddings
            ``(rows, dim)`` on the CPU, one row per row, in order (e.g. ``embed_in_batches``).
        inputs: ``(n, ...)`` rows: a tensor, or a dataset indexed by index tensors.

    Raises:
        ValueError: fewer rows than ranks.
    """
    if len(inputs) < distributed.world_size():
        raise ValueError(f"inputs has {len(inputs)} rows, fewer than the {distributed.world_size()} ranks sharing them")
    rows = rank_rows(len(inputs))
    return gather_rows(embed(RowsOf(inputs, rows)), len(inputs))


def embed_across_ranks(model: nn.Module, inputs: Indexable, batch_size: int = 1024) -> torch.Tensor:
    """:func:`~contrastive_seq.evaluation.embeddings.embed_in_batches` of ``inputs (n, ...)``, each rank
    embedding its share: ``(n, dim)`` float32 on the CPU, on every rank."""
    return across_ranks(lambda rows: embed_in_batches(model, rows, batch_size), inputs)


def knn_accuracy_across_ranks(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 10,
    metric: str = "cosine",
) -> float:
    """:func:`~contrastive_seq.evaluation.probes.knn_accuracy` with the test rows shared among the ranks.

    Every rank passes all embeddings (``(n, dim)`` train, ``(t, dim)`` test, as
    :func:`embed_across_ranks` returns them) and labels; each classifies its
    :func:`rank_rows` of the test set and the correct answers are summed.
    """
    rows = rank_rows(test_embeddings.shape[0])
    correct = torch.zeros(1, dtype=torch.float64)
    if rows.numel():
        accuracy = knn_accuracy(train_embeddings, train_labels, test_embeddings[rows], test_labels[rows], k, metric)
        correct += round(accuracy * rows.numel())
    if distributed.is_distributed():
        correct = correct.to(_collective_device())
        dist.all_reduce(correct)
    return float(correct.item() / test_embeddings.shape[0])


def linear_probe_accuracy_across_ranks(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    test_labels: torch.Tensor,
    max_iter: int = 2000,
) -> float:
    """:func:`~contrastive_seq.evaluation.probes.linear_probe_accuracy` fitted once, on rank 0, and broadcast to every rank."""
    accuracy = torch.zeros(1, dtype=torch.float64)
    if distributed.rank() == 0:
        accuracy += linear_probe_accuracy(train_embeddings, train_labels, test_embeddings, test_labels, max_iter)
    if distributed.is_distributed():
        accuracy = accuracy.to(_collective_device())
        dist.broadcast(accuracy, src=0)
    return float(accuracy.item())


def probe_scores_across_ranks(
    model: nn.Module,
    train_inputs: Indexable,
    train_labels: torch.Tensor,
    test_inputs: Indexable,
    test_labels: torch.Tensor,
    k: int = 10,
    batch_size: int = 1024,
) -> dict[str, float]:
    """kNN and linear-probe accuracy of ``model``'s embeddings, each rank embedding its share of both sets.

    Args:
        model: a Method (``embed``) or an encoder; see ``embed_in_batches``.
        train_inputs, test_inputs: ``(n, ...)`` and ``(t, ...)`` inputs (tensors or datasets).
        train_labels, test_labels: ``(n,)`` and ``(t,)`` integer classes.

    Returns:
        ``{"knn_accuracy": ..., "linear_probe_accuracy": ...}``, equal on every rank.
    """
    train = embed_across_ranks(model, train_inputs, batch_size)
    test = embed_across_ranks(model, test_inputs, batch_size)
    return {
        "knn_accuracy": knn_accuracy_across_ranks(train, train_labels, test, test_labels, k),
        "linear_probe_accuracy": linear_probe_accuracy_across_ranks(train, train_labels, test, test_labels),
    }
