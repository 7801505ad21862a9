"""Tiled InfoNCE (``block_size=...``) against the plain losses that materialise their logits.

The plain losses are checked against loop-by-loop references in
``test_losses_contrastive.py``; here every tiled loss must give the plain
loss's value, parts and gradients (inputs and loss parameters: bilinear
weight, learnable temperature) in float32 to 1e-5, over shapes whose batch is
not a multiple of the block, blocks of one row, blocks larger than the batch
and every similarity. A dispatch-mode probe shows that no (N, M) tensor is
ever created, and a 2-process gloo run that gathered negatives still match
one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from shared_checks import (
    LargestTensor,
    assert_ranks_match_one_process,
    save_ddp_case_results,
)
from torch import nn

from contrastive_seq.losses.clip import CLIPLoss
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.similarity import CosineSimilarity
from contrastive_seq.losses.supcon import SupCon
from contrastive_seq.losses.tiled import LabelPositives, tiled_info_nce

TOL = 1e-5
SIMILARITIES = ("cosine", "dot", "neg_sq_euclidean", "bilinear")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation (and stalls on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def core_kwargs(kind: str, dim: int) -> dict:
    return {"similarity": kind, "dim": dim} if kind == "bilinear" else {"similarity": kind}


def plain_and_tiled(make: Callable[[int | None], nn.Module], block_size: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """The same loss twice, plain and tiled, sharing parameters; a bilinear weight is made random."""
    plain, tiled = make(None), make(block_size)
    with torch.no_grad():
        for parameter in plain.parameters():
            if parameter.dim() == 2:  # the bilinear weight: the identity would hide a transposed use
                parameter.copy_(randn(*parameter.shape, seed=seed) * 0.5)
    tiled.load_state_dict(plain.state_dict())
    return plain, tiled


def assert_tiled_matches_plain(plain: nn.Module, tiled: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
    """Equal loss and parts, and equal gradients for every float input and every loss parameter."""
    results = []
    for loss in (plain, tiled):
        leaves = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
        out = loss(*leaves)
        wrt = [x for x in leaves if x.requires_grad] + list(loss.parameters())
        results.append((out, torch.autograd.grad(out.loss, wrt, allow_unused=True)))
    (plain_out, plain_grads), (tiled_out, tiled_grads) = results
    torch.testing.assert_close(tiled_out.loss, plain_out.loss, rtol=TOL, atol=TOL)
    assert plain_out.parts.keys() == tiled_out.parts.keys()
    for name in plain_out.parts:
        torch.testing.assert_close(tiled_out.parts[name], plain_out.parts[name], rtol=TOL, atol=TOL, msg=name)
    assert len(plain_grads) == len(tiled_grads)
    for g_plain, g_tiled in zip(plain_grads, tiled_grads):
        assert (g_plain is None) == (g_tiled is None)
        if g_plain is not None:
            torch.testing.assert_close(g_tiled, g_plain, rtol=TOL, atol=TOL)


# ----------------------------------------------------------------------------- every loss, many shapes


NTXENT_SHAPES = [(2, 2, 3, 1), (2, 7, 5, 3), (2, 33, 8, 16), (3, 10, 4, 7), (4, 9, 6, 64)]  # (V, N, d, block)


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize(
    ("n_views", "n", "d", "block", "decoupled"),
    [(*shape, decoupled) for shape in NTXENT_SHAPES for decoupled in (False, True) if shape[1] > 1 or not decoupled],
)
def test_ntxent(kind: str, n_views: int, n: int, d: int, block: int, decoupled: bool) -> None:
    plain, tiled = plain_and_tiled(
        lambda bs: NTXent(decoupled=decoupled, block_size=bs, **core_kwargs(kind, d)), block, seed=n
    )
    assert_tiled_matches_plain(plain, tiled, [randn(n_views, n, d, seed=n_views * 100 + n)])


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize(("n", "d", "block"), [(2, 3, 1), (5, 4, 2), (33, 8, 16), (40, 6, 64)])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_clip_both_directions_and_learnable_temperature(
    kind: str, n: int, d: int, block: int, temperature: float
) -> None:
    plain, tiled = plain_and_tiled(
        lambda bs: CLIPLoss(block_size=bs, temperature=temperature, **core_kwargs(kind, d)), block, seed=n
    )
    assert tiled.core.temperature.learnable  # CLIP's default: its gradient is compared too
    assert_tiled_matches_plain(plain, tiled, [randn(n, d, seed=n), randn(n, d, seed=n + 1000)])


@pytest.mark.parametrize(
    ("n_views", "labels", "block"),
    [
        (1, [0, 1, 0, 1], 1),
        (1, [0, 0, 1, 2, 3], 2),  # rows without a positive leave the mean
        (2, [0, 1, 2], 4),
        (2, [3, 3, 1, 3, 1, 7, 7, 0, 3, 1, 1], 5),
        (3, [0, 1, 0, 2, -5, 9, 2], 64),  # labels need not be small or non-negative
    ],
)
@pytest.mark.parametrize("kind", ["cosine", "dot", "bilinear"])
def test_supcon_multi_positive(n_views: int, labels: list[int], block: int, kind: str) -> None:
    d = 5
    plain, tiled = plain_and_tiled(lambda bs: SupCon(block_size=bs, **core_kwargs(kind, d)), block, seed=block)
    assert_tiled_matches_plain(plain, tiled, [randn(n_views, len(labels), d, seed=len(labels)), torch.tensor(labels)])


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize("negatives_layout", ["in_batch", "shared", "per_query"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize(("n", "k", "block"), [(2, 1, 1), (9, 13, 4), (30, 17, 8)])
def test_info_nce(kind: str, negatives_layout: str, decoupled: bool, n: int, k: int, block: int) -> None:
    d = 4
    plain, tiled = plain_and_tiled(
        lambda bs: InfoNCE(decoupled=decoupled, block_size=bs, temperature=0.3, **core_kwargs(kind, d)), block, seed=n
    )
    inputs = [randn(n, d, seed=n), randn(n, d, seed=n + 1)]
    if negatives_layout == "shared":
        inputs.append(randn(k, d, seed=n + 2))
    elif negatives_layout == "per_query":  # the plain path, whatever block_size says
        inputs.append(randn(n, k, d, seed=n + 3))
    assert_tiled_matches_plain(plain, tiled, inputs)


def test_moco_queue_is_tiled_through_info_nce() -> None:
    plain, tiled = plain_and_tiled(lambda bs: MoCoLoss(block_size=bs), 5, seed=0)
    assert_tiled_matches_plain(plain, tiled, [randn(12, 6, seed=1), randn(12, 6, seed=2), randn(23, 6, seed=3)])


@pytest.mark.parametrize("make", [NTXent, SupCon, InfoNCE])
def test_learnable_temperature_and_bounds(make: type[nn.Module]) -> None:
    # a temperature at its bound: the clamp's zero gradient must come through the tiles too
    for initial, bounds in ((0.2, (0.01, 100.0)), (0.05, (0.05, 1.0))):
        kwargs = {"learnable_temperature": True, "temperature": initial, "temperature_bounds": bounds}
        plain, tiled = plain_and_tiled(lambda bs: make(block_size=bs, **kwargs), 4, seed=0)
        views = randn(2, 9, 5, seed=4)
        if make is NTXent:
            inputs = [views]
        elif make is SupCon:
            inputs = [views, torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0])]
        else:
            inputs = [views[0], views[1]]
        assert_tiled_matches_plain(plain, tiled, inputs)


def test_float64_accuracy_and_parts_are_exact_counts() -> None:
    """In float64 the argmax of every row agrees, so the accuracies are the same fractions."""
    views = randn(2, 50, 3, seed=9, dtype=torch.float64)  # d = 3: many rows right, many wrong
    plain, tiled = NTXent(temperature=0.2).double(), NTXent(temperature=0.2, block_size=7).double()
    accuracy = plain(views).parts["accuracy"]
    assert 0.0 < float(accuracy) < 1.0
    assert float(tiled(views).parts["accuracy"]) == float(accuracy)


def test_collapsed_embeddings_keep_argmax_ties() -> None:
    """All logits equal: argmax picks the first candidate, in the plain and the tiled path alike."""
    same = torch.ones(6, 4)
    for plain, tiled in ((CLIPLoss(), CLIPLoss(block_size=4)), (NTXent(), NTXent(block_size=4))):
        args = (same, same) if isinstance(plain, CLIPLoss) else (torch.stack([same, same]),)
        for name, value in plain(*args).parts.items():
            torch.testing.assert_close(tiled(*args).parts[name], value, msg=name)


@pytest.mark.parametrize("exclude", [False, True])
def test_plain_accuracy_is_the_first_argmax_even_with_ties(exclude: bool) -> None:
    """The plain path's shortcut (a max, and an argmax only where ties are possible) against argmax itself."""
    from contrastive_seq.losses.terms import info_nce_from_logits

    generator = torch.Generator().manual_seed(0)
    for width in (1, 2, 3, 50):  # integer logits in a narrow range: many rows with several maxima
        logits = torch.randint(0, width, (300, 40), generator=generator).float() * 10.0
        logits[::7] = 5.0  # whole rows tied
        positive = torch.randint(0, 40, (300,), generator=generator)
        positive[::5] = logits[::5].argmax(1)  # rows whose positive is a (first) maximum
        logits[1:3] = 0.0
        logits[1:3, 3] = logits[1:3, 17] = 10.0  # exactly two maxima: log-sum-exp just above max + ln 2
        positive[1:3] = torch.tensor([17, 3])  # the second maximum is no hit, the first is
        column = (positive + 1) % 40 if exclude else None
        expected = logits if column is None else logits.scatter(1, column.unsqueeze(1), float("-inf"))
        correct = info_nce_from_logits(logits, positive, exclude=column).correct
        assert torch.equal(correct, expected.argmax(1) == positive)
        assert 0 < int(correct.sum()) < 300
        top = expected.amax(1)
        unique_top = (torch.logsumexp(expected, 1) - top < 0.68) & (expected.gather(1, positive[:, None])[:, 0] == top)
        if width == 50:  # rows with a unique maximum take the shortcut, the others the argmax
            assert 0 < int(unique_top.sum()) < int(correct.sum())


def test_extreme_logits_stay_finite() -> None:
    """Temperature 0.01 on cosine scores: logits near +-100 overflow a naive exp, not a running log-sum-exp."""
    views = randn(2, 20, 3, seed=5)
    plain, tiled = plain_and_tiled(lambda bs: NTXent(temperature=0.01, block_size=bs), 6, seed=0)
    assert_tiled_matches_plain(plain, tiled, [views])


@pytest.mark.parametrize("make", [NTXent, CLIPLoss])
def test_half_precision_embeddings_accumulate_in_float32(make: type[nn.Module]) -> None:
    """bfloat16 embeddings (as under autocast): the tiles work in float32, unlike bfloat16 logits.

    Dot similarity at temperature 1 makes the factors the embeddings themselves, so the
    loss must be that of the same embeddings in float32.
    """
    z = randn(2, 40, 6, seed=3).to(torch.bfloat16).requires_grad_()
    z32 = z.detach().float().requires_grad_()
    tiled, plain = (make(block_size=bs, similarity="dot", temperature=1.0) for bs in (8, None))
    out = tiled(z) if make is NTXent else tiled(z[0], z[1])
    expected = plain(z32) if make is NTXent else plain(z32[0], z32[1])
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, expected.loss, rtol=TOL, atol=TOL)
    (grad,), (expected_grad,) = torch.autograd.grad(out.loss, [z]), torch.autograd.grad(expected.loss, [z32])
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad.float(), expected_grad, rtol=1e-2, atol=1e-3)


# ----------------------------------------------------------------------------- the functional form


def test_label_positives_equal_the_mask() -> None:
    left, right = randn(10, 4, seed=0, dtype=torch.float64), randn(14, 4, seed=1, dtype=torch.float64)
    labels = LabelPositives(torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 5, 1]), torch.arange(14) % 4)
    exclude = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 13])
    from contrastive_seq.losses.terms import info_nce_from_logits

    plain = info_nce_from_logits(left @ right.T, labels.mask(), exclude=exclude)
    tiled = tiled_info_nce(left, right, labels, exclude=exclude, block_size=3)
    for field in ("loss", "positive_logit", "log_denominator", "correct", "valid"):
        torch.testing.assert_close(getattr(tiled, field), getattr(plain, field), msg=field)
    assert not bool(tiled.valid[8])  # label 5 has no column


def test_no_logit_matrix_is_ever_allocated() -> None:
    """Forward and backward of every tiled loss create no tensor near the size of the (N, M) logits."""

    n, d, block = 96, 4, 12
    views, labels = randn(2, n // 2, d, seed=0), torch.arange(n // 2) % 5
    image, text = randn(n, d, seed=1), randn(n, d, seed=2)
    cases = [
        (lambda bs: NTXent(block_size=bs), (views,)),
        (lambda bs: NTXent(block_size=bs, decoupled=True), (torch.cat([views, views]),)),
        (lambda bs: SupCon(block_size=bs), (views, labels)),
        (lambda bs: CLIPLoss(block_size=bs), (image, text)),
        (lambda bs: InfoNCE(block_size=bs), (image, text, randn(n, d, seed=3))),
    ]
    for make, inputs in cases:
        sizes = {}
        for block_size in (None, block):
            leaves = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
            probe = LargestTensor()
            with probe:
                make(block_size)(*leaves).loss.backward()
            sizes[block_size] = probe.largest
        assert sizes[None] >= n * n // 2  # the plain path does hold the logits
        assert sizes[block] <= 2 * n * (d + 2)  # inputs, factors and gradients: O(N * d), tiles O(block^2)


def test_bad_block_size_and_unfactorisable_similarity_fail_at_construction() -> None:
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(ValueError, match="block_size"):
            NTXent(block_size=bad)

    class Gaussian(CosineSimilarity):
        def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return -torch.cdist(a, b)

    for make in (NTXent, SupCon, CLIPLoss, InfoNCE):
        with pytest.raises(ValueError, match="pairwise"):
            make(block_size=8, similarity=Gaussian())
        make(similarity=Gaussian())  # the plain path takes any similarity


def test_bad_functional_arguments_name_the_argument() -> None:
    left, right = randn(4, 3, seed=0), randn(5, 3, seed=1)
    with pytest.raises(ValueError, match="positive"):
        tiled_info_nce(left, right, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="exclude"):
        tiled_info_nce(left, right, torch.arange(4), exclude=torch.arange(3))
    with pytest.raises(ValueError, match="LabelPositives"):
        tiled_info_nce(left, right, LabelPositives(torch.arange(4), torch.arange(4)))
    with pytest.raises(ValueError, match="right"):
        tiled_info_nce(left, randn(5, 2, seed=2), torch.arange(4))
    with pytest.raises(ValueError, match="needs a negative"):
        tiled_info_nce(left[:1], right[:1], torch.zeros(1, dtype=torch.long), decoupled=True)


# ----------------------------------------------------------------------------- gathered negatives on two ranks

WORLD, SAMPLES, IN_DIM, OUT_DIM, BLOCK = 2, 10, 6, 5, 3
DISTRIBUTED_CASES = ("ntxent_2_views", "ntxent_3_views_decoupled", "supcon", "clip", "infonce")


def _global_batch(case: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(DISTRIBUTED_CASES.index(case))

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    if case == "ntxent_2_views":
        return {"views": rand(2, SAMPLES, IN_DIM)}
    if case == "ntxent_3_views_decoupled":
        return {"views": rand(3, SAMPLES, IN_DIM)}
    if case == "supcon":
        return {"views": rand(2, SAMPLES, IN_DIM), "labels": torch.randint(0, 3, (SAMPLES,), generator=generator)}
    return {"a": rand(SAMPLES, IN_DIM), "b": rand(SAMPLES, IN_DIM)}


class _Harness(nn.Module):
    """A linear encoder and the case's tiled loss (block of 3 rows: tiles straddle the ranks' rows)."""

    def __init__(self, case: str, block_size: int | None):
        super().__init__()
        torch.manual_seed(0)
        self.case = case
        self.encoder = nn.Linear(IN_DIM, OUT_DIM)
        self.loss = {
            "ntxent_2_views": lambda: NTXent(block_size=block_size, learnable_temperature=True),
            "ntxent_3_views_decoupled": lambda: NTXent(block_size=block_size, decoupled=True),
            "supcon": lambda: SupCon(block_size=block_size, similarity="dot"),
            "clip": lambda: CLIPLoss(block_size=block_size),
            "infonce": lambda: InfoNCE(block_size=block_size, similarity="neg_sq_euclidean"),
        }[case]()
        self.double()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "views" in batch:
            args = (self.encoder(batch["views"]),) + ((batch["labels"],) if "labels" in batch else ())
            return self.loss(*args).loss
        return self.loss(self.encoder(batch["a"]), self.encoder(batch["b"]) * 0.7).loss


def _rank_slice(batch: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    rows = SAMPLES // WORLD
    return {k: x.narrow(1 if k == "views" else 0, rank * rows, rows) for k, x in batch.items()}


def _tiled_model(case: str) -> _Harness:
    return _Harness(case, BLOCK)


def _plain_model(case: str) -> _Harness:
    return _Harness(case, block_size=None)


def _rank_batch(case: str, rank: int) -> dict[str, torch.Tensor]:
    return _rank_slice(_global_batch(case), rank)


def test_gathered_negatives_on_two_ranks_match_one_process(tmp_path: Path) -> None:
    """Tiled losses on two gloo ranks equal the plain loss in one process on the whole batch."""
    args = (WORLD, str(tmp_path / "init"), str(tmp_path), DISTRIBUTED_CASES, _tiled_model, _rank_batch)
    mp.spawn(save_ddp_case_results, args=args, nprocs=WORLD, join=True)
    assert_ranks_match_one_process(tmp_path, WORLD, DISTRIBUTED_CASES, _plain_model, _global_batch, TOL)
