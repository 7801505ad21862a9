"""Margin and non-contrastive losses against references written loop by loop from their formulas.

Each reference iterates over rows, dimensions and views with scalar tensors,
so it is slow and obvious; the vectorised loss must match it in value and in
gradient (float64, 1e-5) on random inputs of several shapes. Known points,
DINO's centre and temperature schedule, bad input and a two-process gloo run
(the distributed paths are exact) follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shared_checks import leaving_process_group

from contrastive_seq.losses.byol import BYOLLoss
from contrastive_seq.losses.dino import DINOLoss
from contrastive_seq.losses.margin import EUCLIDEAN_EPS, ContrastiveMargin, TripletMargin
from contrastive_seq.losses.redundancy import BarlowTwinsLoss, VICRegLoss

TOL = 1e-5
DISTANCES = ("euclidean", "cosine")


# ----------------------------------------------------------------------------- references


def hinge(x: torch.Tensor) -> torch.Tensor:
    """``max(0, x)`` of a scalar."""
    return x if x > 0 else torch.zeros_like(x)


def ref_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance of two vectors ``(d,)`` by explicit sums over the coordinates."""
    if kind == "euclidean":
        squares = 0.0
        for k in range(a.shape[0]):
            squares = squares + (a[k] - b[k]) ** 2
        return torch.sqrt(squares + EUCLIDEAN_EPS)
    dot, norm_a, norm_b = 0.0, 0.0, 0.0
    for k in range(a.shape[0]):
        dot = dot + a[k] * b[k]
        norm_a = norm_a + a[k] ** 2
        norm_b = norm_b + b[k] ** 2
    return 1 - dot / (torch.sqrt(norm_a) * torch.sqrt(norm_b))


def ref_triplet(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float, kind: str
) -> torch.Tensor:
    total = 0.0
    for i in range(anchor.shape[0]):
        d_pos = ref_distance(anchor[i], positive[i], kind)
        d_neg = ref_distance(anchor[i], negative[i], kind)
        total = total + hinge(d_pos - d_neg + margin)
    return total / anchor.shape[0]


def ref_contrastive(a: torch.Tensor, b: torch.Tensor, same: Sequence[bool], margin: float, kind: str) -> torch.Tensor:
    total = 0.0
    for i in range(a.shape[0]):
        d = ref_distance(a[i], b[i], kind)
        if same[i]:
            total = total + 0.5 * d**2
        else:
            total = total + 0.5 * hinge(margin - d) ** 2
    return total / a.shape[0]


def ref_byol(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.detach()
    total = 0.0
    for i in range(prediction.shape[0]):
        cosine = 1 - ref_distance(prediction[i], target[i], "cosine")
        total = total + 2 - 2 * cosine
    return total / prediction.shape[0]


def ref_softmax(row: torch.Tensor, shift: torch.Tensor, tau: float) -> list[torch.Tensor]:
    """``softmax((row - shift) / tau)`` of a vector ``(K,)``, entry by entry."""
    exps = [torch.exp((row[k] - shift[k]) / tau) for k in range(row.shape[0])]
    total = sum(exps)
    return [e / total for e in exps]


def ref_log_softmax(row: torch.Tensor, tau: float) -> list[torch.Tensor]:
    """``log_softmax(row / tau)`` of a vector ``(K,)``, entry by entry."""
    log_total = torch.log(sum(torch.exp(row[k] / tau) for k in range(row.shape[0])))
    return [row[k] / tau - log_total for k in range(row.shape[0])]


def ref_dino(
    student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, tau_s: float, tau_t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's loss and the teacher's mean entropy over every view and sample."""
    teacher = teacher.detach()
    n_student, samples, k_dim = student.shape
    n_teacher = teacher.shape[0]
    p_t = [[ref_softmax(teacher[i, n], center, tau_t) for n in range(samples)] for i in range(n_teacher)]
    log_p_s = [[ref_log_softmax(student[j, n], tau_s) for n in range(samples)] for j in range(n_student)]
    total, pairs = 0.0, 0
    for i in range(n_teacher):
        for j in range(n_student):
            if i == j:
                continue
            pair = 0.0
            for n in range(samples):
                for k in range(k_dim):
                    pair = pair - p_t[i][n][k] * log_p_s[j][n][k]
            total = total + pair / samples
            pairs += 1
    entropy = 0.0
    for i in range(n_teacher):
        for n in range(samples):
            for k in range(k_dim):
                entropy = entropy - p_t[i][n][k] * torch.log(p_t[i][n][k])
    return total / pairs, entropy / (n_teacher * samples)


def ref_standardised_columns(z: torch.Tensor, eps: float) -> list[list[torch.Tensor]]:
    """``cols[k][n] = (z[n, k] - mean_k) / sqrt(biased var_k + eps)``."""
    rows, dim = z.shape
    cols = []
    for k in range(dim):
        mean = sum(z[n, k] for n in range(rows)) / rows
        var = sum((z[n, k] - mean) ** 2 for n in range(rows)) / rows
        cols.append([(z[n, k] - mean) / torch.sqrt(var + eps) for n in range(rows)])
    return cols


def ref_barlow(z_a: torch.Tensor, z_b: torch.Tensor, lam: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Barlow Twins: the on- and off-diagonal sums (loss = on + lam * off)."""
    rows, dim = z_a.shape
    a, b = ref_standardised_columns(z_a, eps), ref_standardised_columns(z_b, eps)
    on, off = 0.0, 0.0
    for i in range(dim):
        for j in range(dim):
            c_ij = sum(a[i][n] * b[j][n] for n in range(rows)) / rows
            if i == j:
                on = on + (1 - c_ij) ** 2
            else:
                off = off + c_ij**2
    return on, off


def ref_vicreg_branch(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch's variance and covariance terms, unbiased (N - 1)."""
    rows, dim = z.shape
    means = [sum(z[n, k] for n in range(rows)) / rows for k in range(dim)]
    variance = 0.0
    for k in range(dim):
        var = sum((z[n, k] - means[k]) ** 2 for n in range(rows)) / (rows - 1)
        variance = variance + hinge(1 - torch.sqrt(var + eps))
    covariance = 0.0
    for i in range(dim):
        for j in range(dim):
            if i != j:
                cov = sum((z[n, i] - means[i]) * (z[n, j] - means[j]) for n in range(rows)) / (rows - 1)
                covariance = covariance + cov**2
    return variance / dim, covariance / dim


def ref_vicreg(z_a: torch.Tensor, z_b: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's invariance, variance and covariance terms."""
    rows, dim = z_a.shape
    invariance = 0.0
    for n in range(rows):
        for k in range(dim):
            invariance = invariance + (z_a[n, k] - z_b[n, k]) ** 2
    var_a, cov_a = ref_vicreg_branch(z_a, eps)
    var_b, cov_b = ref_vicreg_branch(z_b, eps)
    return invariance / (rows * dim), var_a + var_b, cov_a + cov_b


# ----------------------------------------------------------------------------- helpers


def randn(*shape: int, seed: int, requires_grad: bool = False) -> torch.Tensor:
    """Standard normal float64 tensor from its own seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(requires_grad)


def assert_value_and_grad(
    fast: Callable[[], torch.Tensor], reference: Callable[[], torch.Tensor], inputs: Sequence[torch.Tensor]
) -> None:
    """Equal values, and equal gradients with respect to every input (None counts as zero)."""
    fast_value, ref_value = fast(), reference()
    torch.testing.assert_close(fast_value, ref_value, rtol=TOL, atol=TOL)
    fast_grads = torch.autograd.grad(fast_value, inputs, allow_unused=True)
    ref_grads = torch.autograd.grad(ref_value, inputs, allow_unused=True)
    for x, g_fast, g_ref in zip(inputs, fast_grads, ref_grads):
        g_fast = torch.zeros_like(x) if g_fast is None else g_fast
        g_ref = torch.zeros_like(x) if g_ref is None else g_ref
        torch.testing.assert_close(g_fast, g_ref, rtol=TOL, atol=TOL)


def scalar(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def decorrelated(rows: int, dim: int, seed: int) -> torch.Tensor:
    """``(rows, dim)`` with zero-mean, mutually orthogonal columns of biased variance 1."""
    centred = randn(rows, dim, seed=seed)
    centred = centred - centred.mean(0)
    q, _ = torch.linalg.qr(centred)
    return q * math.sqrt(rows)


# ----------------------------------------------------------------------------- margin losses


MARGINS = {"euclidean": 2.0, "cosine": 0.6}


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize(("n", "d"), [(1, 1), (5, 3), (7, 6)])
def test_triplet_matches_loops(kind: str, n: int, d: int) -> None:
    anchor, positive, negative = (randn(n, d, seed=s, requires_grad=True) for s in (1, 2, 3))
    loss = TripletMargin(margin=MARGINS[kind], distance=kind)
    assert_value_and_grad(
        lambda: loss(anchor, positive, negative).loss,
        lambda: ref_triplet(anchor, positive, negative, MARGINS[kind], kind),
        [anchor, positive, negative],
    )


def test_triplet_parts() -> None:
    anchor, positive, negative = (randn(9, 4, seed=s) for s in (4, 5, 6))
    out = TripletMargin(margin=1.5)(anchor, positive, negative)
    d_pos = [ref_distance(anchor[i], positive[i], "euclidean") for i in range(9)]
    d_neg = [ref_distance(anchor[i], negative[i], "euclidean") for i in range(9)]
    active = sum(1 for p, q in zip(d_pos, d_neg) if p - q + 1.5 > 0)
    assert 0 < active < 9
    torch.testing.assert_close(out.parts["active_fraction"], scalar(active / 9))
    torch.testing.assert_close(out.parts["positive_distance"], sum(d_pos) / 9)
    torch.testing.assert_close(out.parts["negative_distance"], sum(d_neg) / 9)


@pytest.mark.parametrize("kind", DISTANCES)
def test_triplet_known_points(kind: str) -> None:
    anchor = randn(4, 3, seed=7, requires_grad=True)
    # positive = anchor (d = 0 or sqrt(eps)) and a far negative: no violation
    out = TripletMargin(margin=0.5, distance=kind)(anchor, anchor.detach().clone(), -anchor.detach())
    assert out.loss.item() == 0.0
    assert out.parts["active_fraction"].item() == 0.0
    # anchor = positive = negative: d_pos - d_neg = 0 so the loss is the margin, with a finite gradient
    same = anchor.detach().clone().requires_grad_(True)
    out = TripletMargin(margin=0.5, distance=kind)(anchor, same, same)
    torch.testing.assert_close(out.loss, scalar(0.5))
    assert out.parts["active_fraction"].item() == 1.0
    grads = torch.autograd.grad(out.loss, [anchor, same])
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize(("n", "d"), [(1, 1), (6, 3), (8, 5)])
def test_contrastive_margin_matches_loops(kind: str, n: int, d: int) -> None:
    a, b = randn(n, d, seed=11, requires_grad=True), randn(n, d, seed=12, requires_grad=True)
    same = torch.arange(n) % 3 == 0
    loss = ContrastiveMargin(margin=MARGINS[kind] + 0.5, distance=kind)
    assert_value_and_grad(
        lambda: loss(a, b, same).loss,
        lambda: ref_contrastive(a, b, same.tolist(), MARGINS[kind] + 0.5, kind),
        [a, b],
    )


def test_contrastive_margin_parts() -> None:
    a, b = randn(12, 3, seed=13), randn(12, 3, seed=14)
    same = torch.arange(12) % 2 == 0
    out = ContrastiveMargin(margin=2.5)(a, b, same)
    d = [ref_distance(a[i], b[i], "euclidean") for i in range(12)]
    inside = [bool(d[i] < 2.5) for i in range(1, 12, 2)]
    assert 0 < sum(inside) < 6
    torch.testing.assert_close(out.parts["active_fraction"], scalar(sum(inside) / 6))
    torch.testing.assert_close(out.parts["positive_distance"], sum(d[0::2]) / 6)
    torch.testing.assert_close(out.parts["negative_distance"], sum(d[1::2]) / 6)
    # no dissimilar pair: the dissimilar parts are 0, not NaN
    out = ContrastiveMargin()(a, b, torch.ones(12, dtype=torch.bool))
    assert out.parts["active_fraction"].item() == 0.0 and out.parts["negative_distance"].item() == 0.0


@pytest.mark.parametrize("kind", DISTANCES)
def test_contrastive_margin_known_points(kind: str) -> None:
    a = randn(5, 4, seed=15, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    # identical similar pairs: loss (1/2) d^2 = eps/2 (euclidean) or 0 (cosine), finite zero gradient at d = 0
    out = ContrastiveMargin(distance=kind)(a, b, torch.ones(5, dtype=torch.bool))
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)
    for grad in torch.autograd.grad(out.loss, [a, b]):
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-6, rtol=0)
    # identical dissimilar pairs: (1/2) margin^2, minus the tiny euclidean shift
    out = ContrastiveMargin(margin=0.8, distance=kind)(a, b, torch.zeros(5, dtype=torch.bool))
    torch.testing.assert_close(out.loss, scalar(0.5 * 0.8**2), atol=1e-6, rtol=0)
    assert out.parts["active_fraction"].item() == 1.0


# ----------------------------------------------------------------------------- BYOL


@pytest.mark.parametrize(("n", "d"), [(1, 1), (4, 3), (9, 7)])
def test_byol_matches_loops(n: int, d: int) -> None:
    prediction, target = randn(n, d, seed=21, requires_grad=True), randn(n, d, seed=22, requires_grad=True)
    loss = BYOLLoss()
    assert_value_and_grad(
        lambda: loss(prediction, target).loss, lambda: ref_byol(prediction, target), [prediction, target]
    )


def test_byol_known_points_and_stop_gradient() -> None:
    p = randn(6, 5, seed=23, requires_grad=True)
    loss = BYOLLoss()
    torch.testing.assert_close(loss(p, 3 * p.detach()).loss, scalar(0.0))
    torch.testing.assert_close(loss(p, -p.detach()).loss, scalar(4.0))
    torch.testing.assert_close(loss(p, -p.detach()).parts["cosine"], scalar(-1.0))
    e = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(loss(e, e.flip(1)).loss, scalar(2.0))
    target = randn(6, 5, seed=24, requires_grad=True)
    grad_p, grad_t = torch.autograd.grad(loss(p, target).loss, [p, target], allow_unused=True)
    assert grad_t is None and torch.isfinite(grad_p).all()


# ----------------------------------------------------------------------------- DINO


@pytest.mark.parametrize(("n_student", "n_teacher", "n", "k"), [(2, 1, 3, 4), (2, 2, 1, 5), (4, 2, 3, 6), (3, 3, 2, 3)])
def test_dino_matches_loops(n_student: int, n_teacher: int, n: int, k: int) -> None:
    student = randn(n_student, n, k, seed=31, requires_grad=True)
    teacher = randn(n_teacher, n, k, seed=32, requires_grad=True)
    center = 0.3 * randn(k, seed=33)
    loss = DINOLoss(
        k, student_temperature=0.2, teacher_temperature=0.07, warmup_teacher_temperature=0.03, warmup_steps=4
    )
    loss = loss.double().eval()  # eval: the centre stays put across the two calls below
    loss.center.copy_(center)
    out = loss(student, teacher, step=1)
    ref_loss, ref_entropy = ref_dino(student, teacher, center, 0.2, 0.04)
    torch.testing.assert_close(out.parts["teacher_entropy"], ref_entropy.detach(), rtol=TOL, atol=TOL)
    torch.testing.assert_close(out.parts["kl"], (ref_loss - ref_entropy).detach(), rtol=TOL, atol=TOL)
    torch.testing.assert_close(out.parts["teacher_temperature"], scalar(0.04))
    assert_value_and_grad(
        lambda: loss(student, teacher, step=1).loss,
        lambda: ref_dino(student, teacher, center, 0.2, 0.04)[0],
        [student, teacher],
    )
    torch.testing.assert_close(loss.center, center, rtol=0, atol=0)


def test_dino_uniform_teacher_and_student_give_ln_k() -> None:
    k = 7
    out = DINOLoss(k)(torch.zeros(4, 3, k, dtype=torch.float64), torch.zeros(2, 3, k, dtype=torch.float64))
    torch.testing.assert_close(out.loss, scalar(math.log(k)))
    torch.testing.assert_close(out.parts["teacher_entropy"], scalar(math.log(k)))
    torch.testing.assert_close(out.parts["kl"], scalar(0.0))


def test_dino_leaves_out_same_crop_pairs() -> None:
    # student view 0 copies teacher view 0 and view 1 is uniform: only the (0, 1) pair counts -> ln K
    k = 5
    teacher = 10 * randn(1, 3, k, seed=34)
    student = torch.stack([teacher[0], torch.zeros(3, k, dtype=torch.float64)])
    out = DINOLoss(k, student_temperature=0.04)(student, teacher)
    torch.testing.assert_close(out.loss, scalar(math.log(k)))


def test_dino_center_update_is_exact() -> None:
    k, m = 4, 0.8
    loss = DINOLoss(k, center_momentum=m).double()
    first, second = randn(2, 3, k, seed=35), randn(2, 3, k, seed=36)
    student = randn(3, 3, k, seed=37)
    loss(student, first)
    expected = (1 - m) * first.mean(dim=(0, 1))
    torch.testing.assert_close(loss.center, expected, rtol=0, atol=1e-15)
    # the second call uses the centre of the first, then moves it again
    out = loss(student, second)
    torch.testing.assert_close(out.loss, ref_dino(student, second, expected, 0.1, 0.04)[0], rtol=TOL, atol=TOL)
    expected = m * expected + (1 - m) * second.mean(dim=(0, 1))
    torch.testing.assert_close(loss.center, expected, rtol=0, atol=1e-15)
    # eval mode leaves the centre alone; the buffer is saved with the module
    before = loss.center.clone()
    loss.eval()
    loss(student, first)
    torch.testing.assert_close(loss.center, before, rtol=0, atol=0)
    assert "center" in loss.state_dict()


def test_dino_teacher_temperature_warmup() -> None:
    loss = DINOLoss(3, teacher_temperature=0.07, warmup_teacher_temperature=0.03, warmup_steps=10)
    for step, tau in [(0, 0.03), (5, 0.05), (10, 0.07), (1000, 0.07)]:
        assert loss.teacher_temperature_at(step) == pytest.approx(tau, abs=1e-15)
        out = loss.eval()(randn(2, 2, 3, seed=step), randn(1, 2, 3, seed=step + 1), step=step)
        assert out.parts["teacher_temperature"].item() == pytest.approx(tau, abs=1e-15)
    assert DINOLoss(3, teacher_temperature=0.05).teacher_temperature_at(0) == 0.05


def test_dino_float32_and_teacher_gets_no_gradient() -> None:
    student = torch.randn(3, 4, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 6, requires_grad=True)
    out = DINOLoss(6)(student, teacher)
    assert out.loss.dtype == torch.float32
    grad_s, grad_t = torch.autograd.grad(out.loss, [student, teacher], allow_unused=True)
    assert grad_t is None and torch.isfinite(grad_s).all()


# ----------------------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize("lam", [5e-3, 0.3])
@pytest.mark.parametrize(("n", "d"), [(2, 1), (5, 3), (9, 6)])
def test_barlow_twins_matches_loops(lam: float, n: int, d: int) -> None:
    z_a, z_b = randn(n, d, seed=41, requires_grad=True), randn(n, d, seed=42, requires_grad=True)
    loss = BarlowTwinsLoss(lambda_offdiag=lam)
    out = loss(z_a, z_b)
    on, off = ref_barlow(z_a, z_b, lam, 1e-5)
    torch.testing.assert_close(out.parts["on_diagonal"], on.detach(), rtol=TOL, atol=TOL)
    torch.testing.assert_close(out.parts["off_diagonal"], torch.as_tensor(off).detach().double(), rtol=TOL, atol=TOL)

    def reference() -> torch.Tensor:
        on, off = ref_barlow(z_a, z_b, lam, 1e-5)
        return on + lam * off

    assert_value_and_grad(lambda: loss(z_a, z_b).loss, reference, [z_a, z_b])


def test_barlow_twins_known_points() -> None:
    z = decorrelated(8, 4, seed=43)
    shifted = 3 * z + 2  # standardisation removes any per-dimension affine map
    torch.testing.assert_close(BarlowTwinsLoss(epsilon=0.0)(z, shifted).loss, scalar(0.0), atol=1e-12, rtol=0)
    torch.testing.assert_close(BarlowTwinsLoss()(z, shifted).loss, scalar(0.0), atol=1e-8, rtol=0)
    # opposite branches: c = -I, on-diagonal (1 - (-1))^2 per dimension
    out = BarlowTwinsLoss(epsilon=0.0)(z, -z)
    torch.testing.assert_close(out.parts["on_diagonal"], scalar(16.0))
    torch.testing.assert_close(out.parts["off_diagonal"], scalar(0.0), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- VICReg


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.5, 3.0)])
@pytest.mark.parametrize(("n", "d"), [(2, 1), (5, 3), (9, 6)])
def test_vicreg_matches_loops(weights: tuple[float, float, float], n: int, d: int) -> None:
    # scale 0.8: some dimensions have std below 1 (active hinge) and some above
    z_a = (0.8 * randn(n, d, seed=51)).requires_grad_(True)
    z_b = (0.8 * randn(n, d, seed=52)).requires_grad_(True)
    w_inv, w_var, w_cov = weights
    loss = VICRegLoss(invariance_weight=w_inv, variance_weight=w_var, covariance_weight=w_cov)
    out = loss(z_a, z_b)
    inv, var, cov = ref_vicreg(z_a, z_b, 1e-4)
    for name, value in [("invariance", inv), ("variance", var), ("covariance", cov)]:
        torch.testing.assert_close(out.parts[name], torch.as_tensor(value).detach().double(), rtol=TOL, atol=TOL)

    def reference() -> torch.Tensor:
        inv, var, cov = ref_vicreg(z_a, z_b, 1e-4)
        return w_inv * inv + w_var * var + w_cov * cov

    assert_value_and_grad(lambda: loss(z_a, z_b).loss, reference, [z_a, z_b])


def test_vicreg_known_points() -> None:
    z = 2 * decorrelated(6, 3, seed=53)  # unbiased std > 1, uncorrelated
    out = VICRegLoss()(z, z.clone())
    torch.testing.assert_close(out.loss, scalar(0.0), atol=1e-12, rtol=0)
    # collapse to a constant: each branch's variance term is 1 - sqrt(eps) = 0.99
    constant = torch.ones(5, 4, dtype=torch.float64)
    out = VICRegLoss()(constant, constant)
    torch.testing.assert_close(out.parts["variance"], scalar(2 * 0.99))
    torch.testing.assert_close(out.loss, scalar(25 * 2 * 0.99))


# ----------------------------------------------------------------------------- bad input


def _nan(*shape: int) -> torch.Tensor:
    x = torch.randn(*shape)
    x.view(-1)[0] = float("nan")
    return x


def _r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def _same(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.bool)


BAD_CALLS = {
    # wrong rank
    "triplet rank": (lambda: TripletMargin()(_r(4), _r(4, 3), _r(4, 3)), ValueError, "anchor"),
    "contrastive rank": (lambda: ContrastiveMargin()(_r(4, 3), _r(4, 3, 1), _same(4)), ValueError, "b"),
    "byol rank": (lambda: BYOLLoss()(_r(2, 4, 3), _r(4, 3)), ValueError, "prediction"),
    "dino student rank": (lambda: DINOLoss(3)(_r(4, 3), _r(1, 4, 3)), ValueError, "student"),
    "dino teacher rank": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(4, 3)), ValueError, "teacher"),
    "barlow rank": (lambda: BarlowTwinsLoss()(_r(4), _r(4)), ValueError, "z_a"),
    "vicreg rank": (lambda: VICRegLoss()(_r(4, 3), _r(1, 4, 3)), ValueError, "z_b"),
    # mismatched shapes
    "triplet positive": (lambda: TripletMargin()(_r(4, 3), _r(5, 3), _r(4, 3)), ValueError, "anchor and positive"),
    "triplet negative": (lambda: TripletMargin()(_r(4, 3), _r(4, 3), _r(4, 2)), ValueError, "anchor and negative"),
    "contrastive a b": (lambda: ContrastiveMargin()(_r(4, 3), _r(3, 3), _same(4)), ValueError, "a and b"),
    "byol shapes": (lambda: BYOLLoss()(_r(4, 3), _r(4, 2)), ValueError, "prediction and target"),
    "dino n": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(1, 5, 3)), ValueError, "teacher"),
    "dino more teacher views": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(3, 4, 3)), ValueError, "teacher"),
    "dino one student view": (lambda: DINOLoss(3)(_r(1, 4, 3), _r(1, 4, 3)), ValueError, "student"),
    "barlow shapes": (lambda: BarlowTwinsLoss()(_r(4, 3), _r(5, 3)), ValueError, "z_a and z_b"),
    "vicreg shapes": (lambda: VICRegLoss()(_r(4, 3), _r(4, 2)), ValueError, "z_a and z_b"),
    # wrong K
    "dino student k": (lambda: DINOLoss(3)(_r(2, 4, 4), _r(1, 4, 3)), ValueError, "student must have K"),
    "dino teacher k": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(1, 4, 5)), ValueError, "teacher must have K"),
    # NaN
    "triplet nan": (lambda: TripletMargin()(_r(4, 3), _r(4, 3), _nan(4, 3)), ValueError, "negative"),
    "contrastive nan": (lambda: ContrastiveMargin()(_nan(4, 3), _r(4, 3), _same(4)), ValueError, "a contains"),
    "byol nan": (lambda: BYOLLoss()(_r(4, 3), _nan(4, 3)), ValueError, "target"),
    "dino nan": (lambda: DINOLoss(3)(_r(2, 4, 3), _nan(1, 4, 3)), ValueError, "teacher"),
    "barlow nan": (lambda: BarlowTwinsLoss()(_r(4, 3), _nan(4, 3)), ValueError, "z_b"),
    "vicreg nan": (lambda: VICRegLoss()(_nan(4, 3), _r(4, 3)), ValueError, "z_a"),
    # empty or too small batch
    "triplet empty": (lambda: TripletMargin()(_r(0, 3), _r(0, 3), _r(0, 3)), ValueError, "anchor"),
    "contrastive empty": (lambda: ContrastiveMargin()(_r(0, 3), _r(0, 3), _same(0)), ValueError, "a must"),
    "byol empty": (lambda: BYOLLoss()(_r(0, 3), _r(0, 3)), ValueError, "prediction"),
    "byol empty dim": (lambda: BYOLLoss()(_r(4, 0), _r(4, 0)), ValueError, "prediction"),
    "dino empty": (lambda: DINOLoss(3)(_r(2, 0, 3), _r(1, 0, 3)), ValueError, "student"),
    "dino no views": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(0, 4, 3)), ValueError, "teacher"),
    "barlow one row": (lambda: BarlowTwinsLoss()(_r(1, 3), _r(1, 3)), ValueError, "z_a"),
    "vicreg one row": (lambda: VICRegLoss()(_r(1, 3), _r(1, 3)), ValueError, "z_a"),
    # labels of the contrastive pairs
    "contrastive same dtype": (lambda: ContrastiveMargin()(_r(4, 3), _r(4, 3), torch.ones(4)), TypeError, "same"),
    "contrastive same length": (lambda: ContrastiveMargin()(_r(4, 3), _r(4, 3), _same(5)), ValueError, "same"),
    "contrastive same list": (lambda: ContrastiveMargin()(_r(2, 3), _r(2, 3), [True, False]), TypeError, "same"),
    # not tensors / not floating
    "byol list": (lambda: BYOLLoss()([[1.0]], _r(1, 1)), TypeError, "prediction"),
    "vicreg int": (lambda: VICRegLoss()(torch.ones(4, 3, dtype=torch.long), _r(4, 3)), TypeError, "z_a"),
    # DINO step
    "dino step negative": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(1, 4, 3), step=-1), ValueError, "step"),
    "dino step float": (lambda: DINOLoss(3)(_r(2, 4, 3), _r(1, 4, 3), step=1.5), TypeError, "step"),
    # constructors
    "triplet margin": (lambda: TripletMargin(margin=0.0), ValueError, "margin"),
    "triplet distance": (lambda: TripletMargin(distance="manhattan"), ValueError, "distance"),
    "contrastive margin": (lambda: ContrastiveMargin(margin=-1.0), ValueError, "margin"),
    "contrastive distance": (lambda: ContrastiveMargin(distance="dot"), ValueError, "distance"),
    "dino out_dim": (lambda: DINOLoss(0), ValueError, "out_dim"),
    "dino out_dim float": (lambda: DINOLoss(3.0), TypeError, "out_dim"),
    "dino student temperature": (lambda: DINOLoss(3, student_temperature=0.0), ValueError, "student_temperature"),
    "dino teacher temperature": (lambda: DINOLoss(3, teacher_temperature=-0.1), ValueError, "teacher_temperature"),
    "dino warmup temperature": (lambda: DINOLoss(3, warmup_teacher_temperature=0.0), ValueError, "warmup_teacher"),
    "dino warmup steps": (lambda: DINOLoss(3, warmup_steps=-5), ValueError, "warmup_steps"),
    "dino momentum": (lambda: DINOLoss(3, center_momentum=1.0), ValueError, "center_momentum"),
    "barlow lambda": (lambda: BarlowTwinsLoss(lambda_offdiag=-1.0), ValueError, "lambda_offdiag"),
    "barlow epsilon": (lambda: BarlowTwinsLoss(epsilon=float("nan")), ValueError, "epsilon"),
    "vicreg weight": (lambda: VICRegLoss(variance_weight=-1.0), ValueError, "variance_weight"),
    "vicreg weight type": (lambda: VICRegLoss(covariance_weight="1"), TypeError, "covariance_weight"),
    "vicreg epsilon": (lambda: VICRegLoss(epsilon=0.0), ValueError, "epsilon"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_input_names_the_argument(case: str) -> None:
    call, error, match = BAD_CALLS[case]
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- distributed (two gloo processes)


def _distributed_worker(rank: int, world: int, init_file: str, cases: dict) -> None:
    """One rank: run each loss on this rank's rows and compare with the single-process results."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    with leaving_process_group():
        for name, (loss, inputs, splits, expected_loss, expected_grads) in cases.items():
            local = [x[splits[rank]].clone().requires_grad_(True) for x in inputs]
            value = loss(*local).loss
            torch.testing.assert_close(value, expected_loss, rtol=1e-10, atol=1e-10, msg=name)
            # each rank's backward sums over ranks; DDP then divides by the world size
            for grad, expected in zip(torch.autograd.grad(value, local), expected_grads):
                torch.testing.assert_close(grad / world, expected[splits[rank]], rtol=1e-10, atol=1e-10, msg=name)
        dino, student, teacher, expected_center = cases_dino(rank)
        dino(student, teacher)
        torch.testing.assert_close(dino.center, expected_center, rtol=0, atol=1e-15)


def cases_dino(rank: int) -> tuple[DINOLoss, torch.Tensor, torch.Tensor, torch.Tensor]:
    """DINO on half of a global batch of 6 samples, and the centre a single process would get."""
    student, teacher = randn(3, 6, 4, seed=61), randn(2, 6, 4, seed=62)
    rows = slice(3 * rank, 3 * rank + 3)
    expected_center = (1 - 0.7) * teacher.mean(dim=(0, 1))
    return DINOLoss(4, center_momentum=0.7).double(), student[:, rows], teacher[:, rows], expected_center


def test_distributed_runs_equal_one_process_on_the_global_batch(tmp_path) -> None:
    cases = {}
    for name, loss, splits in [
        # Barlow Twins all-reduces its statistics, so ranks may hold different numbers of rows
        ("barlow", BarlowTwinsLoss(lambda_offdiag=0.1), [slice(0, 3), slice(3, 8)]),
        ("vicreg", VICRegLoss(), [slice(0, 4), slice(4, 8)]),
    ]:
        inputs = [randn(8, 5, seed=63, requires_grad=True), randn(8, 5, seed=64, requires_grad=True)]
        value = loss(*inputs).loss
        grads = torch.autograd.grad(value, inputs)
        cases[name] = (loss, [x.detach() for x in inputs], splits, value.detach(), grads)
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "rendezvous"), cases), nprocs=2, join=True)
