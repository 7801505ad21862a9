"""SimSiam, Barlow Twins, VICReg, NNCLR and triplet metric learning: losses against loops written from the
formulas and against lightly / pytorch-metric-learning on fixed inputs, and a 2-rank gloo run of every method
against one process on the whole batch."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from shared_checks import assert_ranks_match_one_process, save_ddp_case_results
from torch import nn

from contrastive_seq.losses.margin import MinedTripletMargin, mine_triplets
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from contrastive_seq.losses.simsiam import SimSiamLoss
from contrastive_seq.losses.swav import SwAVLoss, sinkhorn_knopp
from contrastive_seq.methods.nnclr import NNCLR, nearest_neighbours
from contrastive_seq.methods.redundancy import BarlowTwins, VICReg
from contrastive_seq.methods.simsiam import SimSiam
from contrastive_seq.methods.swav import SwAV
from contrastive_seq.methods.triplet import TripletMetric
from contrastive_seq.models.heads import MLPHead, Prototypes


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- SimSiam


def test_simsiam_loss_matches_a_loop_and_lightly():
    p, z = randn(7, 5, seed=1).requires_grad_(), randn(7, 5, seed=2).requires_grad_()
    output = SimSiamLoss()(p, z)
    loop = -sum(p[i].dot(z[i]) / (p[i].norm() * z[i].norm()) for i in range(7)) / 7
    torch.testing.assert_close(output.loss, loop)
    output.loss.backward()
    assert z.grad is None and p.grad is not None  # the target is stopped
    lightly_loss = pytest.importorskip("lightly.loss").NegativeCosineSimilarity()
    torch.testing.assert_close(output.loss, lightly_loss(p, z.detach()))


def test_simsiam_is_symmetric_and_its_predictor_keeps_a_fixed_rate():
    torch.manual_seed(0)
    method = SimSiam(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 3)).double()
    views = randn(2, 6, 1, 2, 2, seed=3)
    z = method.online(views.flatten(0, 1)).unflatten(0, (2, 6))
    p = method.predictor(z)
    cos = F.cosine_similarity
    expected = -(cos(p[0], z[1]).mean() + cos(p[1], z[0]).mean()) / 2
    torch.testing.assert_close(method({"views": views}).loss, expected)
    (group,) = method.param_groups()
    assert group.prefixes == ("predictor.",) and not group.scheduled
    assert SimSiam(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 3), fixed_predictor_lr=False).param_groups() == []


def test_simsiam_projector_ends_in_batch_norm_without_affine():
    head = MLPHead(8, 16, 4, num_layers=3, output_batch_norm=True)
    assert isinstance(head[-1], nn.BatchNorm1d) and not head[-1].affine and head[-2].bias is None
    out = head(torch.randn(32, 8))
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- Barlow Twins, VICReg


def test_barlow_twins_and_vicreg_equal_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    z_a, z_b = randn(16, 6, seed=4), randn(16, 6, seed=5)
    torch.testing.assert_close(BarlowTwinsLoss(0.01)(z_a, z_b).loss, lightly_loss.BarlowTwinsLoss(0.01)(z_a, z_b))
    # the paper's variance term sums both branches; lightly (the authors' code) halves it
    ours = VICRegLoss(25.0, 12.5, 1.0)(z_a, z_b).loss
    torch.testing.assert_close(ours, lightly_loss.VICRegLoss(25.0, 25.0, 1.0)(z_a, z_b))


@pytest.mark.parametrize("method_class, loss", [(BarlowTwins, BarlowTwinsLoss()), (VICReg, VICRegLoss())])
def test_redundancy_methods_score_the_two_projected_views(method_class, loss):
    torch.manual_seed(0)
    method = method_class(nn.Flatten(), nn.Linear(4, 3)).double()
    views = randn(2, 6, 1, 2, 2, seed=6)
    z = method.online(views.flatten(0, 1)).unflatten(0, (2, 6))
    torch.testing.assert_close(method({"views": views}).loss, loss(z[0], z[1]).loss)
    with pytest.raises(ValueError, match=r"batch\['views'\] must hold at least 2 images"):
        method({"views": views[:, :1]})


# ----------------------------------------------------------------------------- NNCLR


def test_nearest_neighbours_match_a_loop():
    queries, support = randn(5, 3, seed=7), randn(9, 3, seed=8)
    found = nearest_neighbours(queries, support)
    for i in range(5):
        scores = [queries[i].dot(s) / (queries[i].norm() * s.norm()) for s in support]
        torch.testing.assert_close(found[i], support[int(torch.stack(scores).argmax())])


def nnclr_method(support_size: int = 16) -> NNCLR:
    torch.manual_seed(0)
    projector = MLPHead(4, 3, 3, num_layers=1)  # a plain linear layer with output_dim
    return NNCLR(nn.Flatten(), projector, nn.Linear(3, 3), NTXent(temperature=0.1), support_size).double()


def test_nnclr_loss_equals_lightly_and_fills_its_support_set():
    lightly_loss = pytest.importorskip("lightly.loss")
    method = nnclr_method()
    views = randn(2, 8, 1, 2, 2, seed=9)
    support = method.support.keys.clone()
    z = method.online(views.flatten(0, 1)).unflatten(0, (2, 8))
    p = method.predictor(z)
    ntxent = lightly_loss.NTXentLoss(temperature=0.1)
    expected = (
        ntxent(nearest_neighbours(z[0], support), p[1]) + ntxent(nearest_neighbours(z[1], support), p[0])
    ) / 2
    torch.testing.assert_close(method({"views": views}).loss, expected)
    method.after_step(0)
    torch.testing.assert_close(method.support.keys[:8], z[0].detach())
    torch.testing.assert_close(method.support.keys[8:], support[8:])
    with pytest.raises(ValueError, match="queue_size=16 must be a multiple of the 6 keys"):
        method({"views": views[:, :6]})


# ----------------------------------------------------------------------------- triplet mining


def mined_by_loops(distances: torch.Tensor, labels: torch.Tensor, mining: str, margin: float) -> set[tuple]:
    """The triplets of each mining, by their definitions, one anchor at a time."""
    n = len(labels)
    triplets = set()
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        if mining == "batch_hard":
            if positives and negatives:
                hardest_positive = max(positives, key=lambda p: distances[a, p])
                hardest_negative = min(negatives, key=lambda k: distances[a, k])
                triplets.add((a, hardest_positive, hardest_negative))
            continue
        for p, k in itertools.product(positives, negatives):
            if 0 < distances[a, k] - distances[a, p] <= margin:
                triplets.add((a, p, k))
    return triplets


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mining_matches_its_definition(mining):
    embeddings, labels = randn(12, 3, seed=10), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3, 3, 4, 0])
    distances = torch.cdist(embeddings, embeddings)
    mined = mine_triplets(distances, labels, mining, margin=0.5)
    expected = mined_by_loops(distances, labels, mining, 0.5)
    assert set(zip(*(index.tolist() for index in mined))) == expected and len(mined[0]) == len(expected)
    if mining == "batch_hard":
        assert 10 not in mined[0].tolist()  # label 4 has no positive


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mined_triplet_loss_matches_a_loop_and_pytorch_metric_learning(mining):
    embeddings, labels = randn(16, 4, seed=11).requires_grad_(), torch.arange(16) % 4
    loss = MinedTripletMargin(margin=0.5, mining=mining)
    output = loss(embeddings, labels)
    distances = torch.cdist(embeddings.detach(), embeddings.detach())
    triplets = mined_by_loops(distances, labels, mining, 0.5)

    def d(i: int, j: int) -> torch.Tensor:
        return torch.sqrt((embeddings[i] - embeddings[j]).pow(2).sum() + 1e-12)

    loop = sum(F.relu(d(a, p) - d(a, k) + 0.5) for a, p, k in triplets) / len(triplets)
    torch.testing.assert_close(output.loss, loop)
    assert output.parts["triplets"] == len(triplets)
    (gradient,) = torch.autograd.grad(output.loss, embeddings, retain_graph=True)
    (loop_gradient,) = torch.autograd.grad(loop, embeddings)
    torch.testing.assert_close(gradient, loop_gradient)

    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances as pml_distances, losses, miners, reducers

    euclidean = pml_distances.LpDistance(normalize_embeddings=False)
    miner = (
        miners.BatchHardMiner(distance=euclidean)
        if mining == "batch_hard"
        else miners.TripletMarginMiner(margin=0.5, type_of_triplets="semihard", distance=euclidean)
    )
    theirs = losses.TripletMarginLoss(margin=0.5, distance=euclidean, reducer=reducers.MeanReducer())
    expected = theirs(embeddings, labels, miner(embeddings, labels))
    assert pml.__version__
    torch.testing.assert_close(output.loss, expected, rtol=1e-6, atol=1e-6)


def test_a_batch_without_triplets_gives_zero_with_a_graph():
    embeddings = randn(4, 3, seed=12).requires_grad_()
    output = MinedTripletMargin()(embeddings, torch.arange(4))  # no positives
    assert output.loss.item() == 0 and output.parts["triplets"] == 0 and output.loss.requires_grad


def test_bad_mining_and_missing_labels_are_named():
    with pytest.raises(ValueError, match=r"mining must be one of \('batch_hard', 'semi_hard'\), got 'hard'"):
        MinedTripletMargin(mining="hard")
    method = TripletMetric(nn.Flatten(), nn.Identity(), MinedTripletMargin())
    with pytest.raises(ValueError, match=r"needs batch\['labels'\]"):
        method({"views": torch.randn(2, 4, 1, 2, 2)})


# ----------------------------------------------------------------------------- SwAV


def sinkhorn_by_loops(scores: torch.Tensor, iterations: int, epsilon: float) -> torch.Tensor:
    """Sinkhorn-Knopp entry by entry: alternate prototype (column) and sample (row) normalisation."""
    b, k = scores.shape
    q = [[float(torch.exp(scores[i, j] / epsilon)) for j in range(k)] for i in range(b)]
    total = sum(map(sum, q))
    q = [[value / total for value in row] for row in q]
    for _ in range(iterations):
        columns = [sum(q[i][j] for i in range(b)) for j in range(k)]
        q = [[q[i][j] / (k * columns[j]) for j in range(k)] for i in range(b)]
        q = [[value / (b * sum(row)) for value in row] for row in q]
    return torch.tensor(q, dtype=scores.dtype) * b


def test_sinkhorn_matches_loops_and_balances_the_prototypes():
    scores = randn(6, 4, seed=13).tanh()
    codes = sinkhorn_knopp(scores, iterations=3, epsilon=0.5)
    torch.testing.assert_close(codes, sinkhorn_by_loops(scores, 3, 0.5))
    torch.testing.assert_close(codes.sum(1), torch.ones(6, dtype=torch.float64))
    balanced = sinkhorn_knopp(scores, iterations=200, epsilon=0.5)
    torch.testing.assert_close(balanced.sum(0), torch.full((4,), 6 / 4, dtype=torch.float64))


@pytest.mark.parametrize("local, queue", [(False, False), (True, False), (True, True)])
def test_swav_loss_matches_a_loop_and_lightly(local, queue):
    global_scores = randn(2, 8, 5, seed=14).tanh().requires_grad_()
    local_scores = randn(3, 8, 5, seed=15).tanh() if local else None
    queue_scores = randn(2, 16, 5, seed=16).tanh() if queue else None
    output = SwAVLoss(temperature=0.2, epsilon=0.1)(global_scores, local_scores, queue_scores)
    crops = [*global_scores, *([] if local_scores is None else local_scores)]
    expected = 0
    for i in range(2):
        scores = global_scores[i].detach()
        if queue_scores is not None:
            scores = torch.cat([scores, queue_scores[i]])
        codes = sinkhorn_by_loops(scores, 3, 0.1)[:8]
        terms = [-(codes * torch.log_softmax(crop / 0.2, 1)).sum(1).mean() for v, crop in enumerate(crops) if v != i]
        expected = expected + sum(terms) / (len(crops) - 1)
    torch.testing.assert_close(output.loss, expected / 2)
    lightly_loss = pytest.importorskip("lightly.loss")
    theirs = lightly_loss.SwaVLoss(temperature=0.2, sinkhorn_epsilon=0.1)(
        list(global_scores), [] if local_scores is None else list(local_scores),
        None if queue_scores is None else list(queue_scores),
    )
    torch.testing.assert_close(output.loss, theirs.squeeze())


def swav_method(queue_size: int | None = None, freeze: int = 0) -> SwAV:
    torch.manual_seed(0)
    projector = MLPHead(4, 3, 3, num_layers=1)
    encoder = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())  # any crop size -> 4 features
    return SwAV(encoder, projector, Prototypes(3, 5), SwAVLoss(), freeze, queue_size).double()


def test_swav_freezes_its_prototypes_and_fills_its_queue_before_using_it():
    method = swav_method(queue_size=8, freeze=1)
    batch = {"views": randn(2, 4, 1, 2, 2, seed=17), "local_views": randn(3, 4, 1, 1, 1, seed=18)}
    method(batch).loss.backward()
    assert method.prototypes.weight.grad is not None
    method.before_optimizer_step(0)
    assert method.prototypes.weight.grad is None
    method.after_step(0)
    method(batch).loss.backward()
    method.before_optimizer_step(1)
    assert method.prototypes.weight.grad is not None
    method.after_step(1)  # 8 rows queued per crop: the queue is full
    embeddings = F.normalize(method.online(batch["views"].flatten(0, 1)), dim=1).unflatten(0, (2, 4))
    torch.testing.assert_close(method.queues[0].keys[4:], embeddings[0].detach())
    local = F.normalize(method.online(batch["local_views"].flatten(0, 1)), dim=1).unflatten(0, (3, 4))
    queue_scores = torch.stack([method.prototypes(q.keys) for q in method.queues])
    expected = SwAVLoss()(method.prototypes(embeddings), method.prototypes(local), queue_scores)
    torch.testing.assert_close(method(batch).loss, expected.loss)
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(5, dtype=torch.float64))


# ----------------------------------------------------------------------------- 2 ranks = 1 process

WORLD, SAMPLES = 2, 8
CASES = ("simsiam", "barlow_twins", "vicreg", "nnclr", "swav", "triplet_batch_hard", "triplet_semi_hard")


class MethodHarness(nn.Module):
    """One method on tiny 1x2x2 images, BatchNorm-free heads (per-rank BatchNorm would differ); ``forward -> loss``."""

    def __init__(self, case: str):
        super().__init__()
        torch.manual_seed(0)
        encoder, head = nn.Sequential(nn.Flatten(), nn.Linear(4, 5)), MLPHead(5, 3, 3, num_layers=1)
        if case == "simsiam":
            self.method = SimSiam(encoder, head, nn.Linear(3, 3))
        elif case == "barlow_twins":
            self.method = BarlowTwins(encoder, head, BarlowTwinsLoss(0.1))
        elif case == "vicreg":
            self.method = VICReg(encoder, head)
        elif case == "nnclr":
            self.method = NNCLR(encoder, head, nn.Linear(3, 3), NTXent(temperature=0.5), support_size=16)
        elif case == "swav":  # codes with sums over ranks; local crops of 1x1 pixel
            self.method = SwAV(encoder, head, Prototypes(3, 4), SwAVLoss(temperature=0.5, epsilon=0.5))
        else:
            self.method = TripletMetric(encoder, head, MinedTripletMargin(0.5, mining=case.removeprefix("triplet_")))
        self.double()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.method(batch).loss


def global_batch(case: str) -> dict[str, torch.Tensor]:
    batch = {"views": randn(2, SAMPLES, 1, 2, 2, seed=CASES.index(case))}
    if case == "swav":
        batch["local_views"] = randn(2, SAMPLES, 1, 2, 2, seed=99)
    if case.startswith("triplet"):
        batch["labels"] = torch.tensor([0, 1, 2, 0, 1, 2, 1, 0])
    return batch


def rank_batch(case: str, rank: int) -> dict[str, torch.Tensor]:
    rows = SAMPLES // WORLD
    batch = global_batch(case)
    return {name: x.narrow(0 if name == "labels" else 1, rank * rows, rows) for name, x in batch.items()}


def test_every_method_on_two_ranks_matches_one_process(tmp_path: Path) -> None:
    args = (WORLD, str(tmp_path / "init"), str(tmp_path), CASES, MethodHarness, rank_batch)
    mp.spawn(save_ddp_case_results, args=args, nprocs=WORLD, join=True)
    assert_ranks_match_one_process(tmp_path, WORLD, CASES, MethodHarness, global_batch, 1e-6)
