"""The InfoNCE-family losses against references written loop by loop from their formulas.

Every reference below iterates ``for i: for j:`` over scalar scores, so it is
slow and obvious; the fast vectorised losses must match it in value and in
gradient (float64, 1e-5) over several shapes and every similarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch

from contrastive_seq.losses.clip import CLIPLoss, SigLIPLoss
from contrastive_seq.losses.infonce import InfoNCE
from contrastive_seq.losses.moco import MoCoLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.supcon import SupCon

TOL = 1e-5
SIMILARITIES = ("cosine", "dot", "neg_sq_euclidean", "bilinear")


# ----------------------------------------------------------------------------- references


def ref_similarity(a: torch.Tensor, b: torch.Tensor, kind: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Score of one pair of vectors ``a (d,)``, ``b (d,)`` from the definition."""
    if kind == "cosine":
        return torch.dot(a, b) / (a.norm() * b.norm())
    if kind == "dot":
        return torch.dot(a, b)
    if kind == "neg_sq_euclidean":
        return -((a - b) ** 2).sum()
    if kind == "bilinear":
        return a @ weight @ b
    raise AssertionError(kind)


def ref_row_loss(scores: Sequence[torch.Tensor], positives: Sequence[int], denominator: Sequence[int]) -> torch.Tensor:
    """``log sum_{k in D} exp(s_k) - mean_{p in P} s_p`` with explicit sums."""
    total = 0.0
    for k in denominator:
        total = total + torch.exp(scores[k])
    mean_positive = 0.0
    for p in positives:
        mean_positive = mean_positive + scores[p]
    return torch.log(total) - mean_positive / len(positives)


def ref_info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None,
    tau: float,
    kind: str,
    weight: torch.Tensor | None,
    decoupled: bool,
) -> torch.Tensor:
    """InfoNCE: in-batch (negatives None), shared (M, d) or per-query (N, K, d) negatives."""
    n = query.shape[0]
    total = 0.0
    for i in range(n):
        if negatives is None:
            candidates = [positive[j] for j in range(n)]
            pos = i
        elif negatives.dim() == 2:
            candidates = [positive[i]] + [negatives[m] for m in range(negatives.shape[0])]
            pos = 0
        else:
            candidates = [positive[i]] + [negatives[i, k] for k in range(negatives.shape[1])]
            pos = 0
        scores = [ref_similarity(query[i], c, kind, weight) / tau for c in candidates]
        denominator = [j for j in range(len(candidates)) if not (decoupled and j == pos)]
        total = total + ref_row_loss(scores, [pos], denominator)
    return total / n


def ref_multi_positive(
    rows: torch.Tensor, row_labels: Sequence[int], tau: float, kind: str, weight: torch.Tensor | None, decoupled: bool
) -> torch.Tensor:
    """Each row against every other: positives share its label; rows without one are skipped."""
    total, valid = 0.0, 0
    for i in range(rows.shape[0]):
        scores = [ref_similarity(rows[i], rows[j], kind, weight) / tau for j in range(rows.shape[0])]
        positives = [j for j in range(rows.shape[0]) if j != i and row_labels[j] == row_labels[i]]
        if not positives:
            continue
        denominator = [j for j in range(rows.shape[0]) if j != i and not (decoupled and j in positives)]
        total = total + ref_row_loss(scores, positives, denominator)
        valid += 1
    if valid == 0:
        raise ValueError("no positive")
    return total / valid


def ref_ntxent(
    views: torch.Tensor, tau: float, kind: str, weight: torch.Tensor | None = None, decoupled: bool = False
) -> torch.Tensor:
    """NT-Xent: row (v, n) has the other views of sample n as positives."""
    n_views, n = views.shape[:2]
    rows = torch.stack([views[v, s] for v in range(n_views) for s in range(n)])
    return ref_multi_positive(rows, [s for _ in range(n_views) for s in range(n)], tau, kind, weight, decoupled)


def ref_supcon(views: torch.Tensor, labels: Sequence[int], tau: float, kind: str = "cosine") -> torch.Tensor:
    """SupCon L_out: row (v, n) has every other row with label labels[n] as a positive."""
    n_views, n = views.shape[:2]
    rows = torch.stack([views[v, s] for v in range(n_views) for s in range(n)])
    return ref_multi_positive(rows, [labels[s] for _ in range(n_views) for s in range(n)], tau, kind, None, False)


def ref_clip(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy with logit scale exp(log_scale)."""
    n = image.shape[0]
    scale = log_scale.exp()
    image_to_text, text_to_image = 0.0, 0.0
    for i in range(n):
        row = [scale * ref_similarity(image[i], text[j], "cosine") for j in range(n)]
        column = [scale * ref_similarity(image[j], text[i], "cosine") for j in range(n)]
        image_to_text = image_to_text + ref_row_loss(row, [i], range(n))
        text_to_image = text_to_image + ref_row_loss(column, [i], range(n))
    return (image_to_text / n + text_to_image / n) / 2


def ref_siglip(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``-(1/N) sum_i sum_j log sigmoid(z_ij (t s_ij + b))``, z = +1 on the diagonal, -1 elsewhere."""
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = log_scale.exp() * ref_similarity(image[i], text[j], "cosine") + bias
            total = total + torch.log(1.0 / (1.0 + torch.exp(-z * logit)))
    return -total / n


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


def with_random_bilinear(loss: torch.nn.Module, dim: int, seed: int) -> torch.Tensor | None:
    """Give a bilinear similarity a random weight (not the identity); return it, or None."""
    similarity = loss.core.similarity if hasattr(loss, "core") else loss.info_nce.core.similarity
    if not hasattr(similarity, "weight"):
        return None
    with torch.no_grad():
        similarity.weight.copy_(randn(dim, dim, seed=seed))
    return similarity.weight


def core_kwargs(kind: str, dim: int) -> dict:
    return {"similarity": kind, "dim": dim} if kind == "bilinear" else {"similarity": kind}


# ----------------------------------------------------------------------------- InfoNCE itself


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize("negatives_layout", ["in_batch", "shared", "per_query"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize(("n", "d", "k"), [(2, 3, 1), (5, 4, 3), (7, 2, 6)])
def test_info_nce_matches_loops(kind: str, negatives_layout: str, decoupled: bool, n: int, d: int, k: int) -> None:
    loss = InfoNCE(decoupled=decoupled, temperature=0.5, **core_kwargs(kind, d)).double()
    weight = with_random_bilinear(loss, d, seed=99)
    query, positive = randn(n, d, seed=1, requires_grad=True), randn(n, d, seed=2, requires_grad=True)
    negatives = {
        "in_batch": None,
        "shared": randn(k, d, seed=3, requires_grad=True),
        "per_query": randn(n, k, d, seed=4, requires_grad=True),
    }[negatives_layout]
    inputs = [t for t in (query, positive, negatives, weight) if t is not None]
    assert_value_and_grad(
        lambda: loss(query, positive, negatives).loss,
        lambda: ref_info_nce(query, positive, negatives, 0.5, kind, weight, decoupled),
        inputs,
    )


def test_info_nce_parts_add_up_to_the_loss() -> None:
    out = InfoNCE()(randn(6, 4, seed=0), randn(6, 4, seed=1))
    torch.testing.assert_close(out.parts["alignment"] + out.parts["uniformity"], out.loss.detach())
    assert 0.0 <= float(out.parts["accuracy"]) <= 1.0


@pytest.mark.parametrize("n", [2, 5, 16])
def test_info_nce_is_ln_n_at_zero_logits(n: int) -> None:
    def tiny(*shape: int, seed: int) -> torch.Tensor:
        return randn(*shape, seed=seed) * 1e-9

    query, positive = tiny(n, 3, seed=0), tiny(n, 3, seed=1)
    loss = InfoNCE(similarity="dot")
    assert float(loss(query, positive).loss) == pytest.approx(math.log(n), abs=1e-9)
    assert float(loss(query, positive, tiny(7, 3, seed=2)).loss) == pytest.approx(math.log(8), abs=1e-9)
    assert float(loss(query, positive, tiny(n, 4, 3, seed=3)).loss) == pytest.approx(math.log(5), abs=1e-9)
    decoupled = InfoNCE(similarity="dot", decoupled=True)
    assert float(decoupled(query, positive).loss) == pytest.approx(math.log(n - 1), abs=1e-9)


def test_info_nce_is_about_ln_n_at_high_temperature() -> None:
    loss = InfoNCE(temperature=100.0)(randn(10, 8, seed=0), randn(10, 8, seed=1)).loss
    assert float(loss) == pytest.approx(math.log(10), abs=0.03)


# ----------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("kind", SIMILARITIES)
@pytest.mark.parametrize(("n_views", "n", "d"), [(2, 2, 3), (2, 5, 4), (3, 4, 2), (4, 3, 5)])
def test_ntxent_matches_loops(kind: str, n_views: int, n: int, d: int) -> None:
    loss = NTXent(**core_kwargs(kind, d)).double()
    weight = with_random_bilinear(loss, d, seed=7)
    views = randn(n_views, n, d, seed=n_views * 10 + n, requires_grad=True)
    inputs = [t for t in (views, weight) if t is not None]
    assert_value_and_grad(lambda: loss(views).loss, lambda: ref_ntxent(views, 0.5, kind, weight), inputs)


@pytest.mark.parametrize("n_views", [2, 3])
def test_ntxent_decoupled_matches_loops(n_views: int) -> None:
    loss = NTXent(decoupled=True, temperature=0.3).double()
    views = randn(n_views, 4, 3, seed=5, requires_grad=True)
    assert_value_and_grad(
        lambda: loss(views).loss, lambda: ref_ntxent(views, 0.3, "cosine", decoupled=True), [views]
    )


def test_ntxent_defaults_are_simclr() -> None:
    loss = NTXent()
    assert loss.core.similarity.__class__.__name__ == "CosineSimilarity"
    assert float(loss.core.temperature()) == pytest.approx(0.5)


@pytest.mark.parametrize(("n_views", "n"), [(2, 2), (2, 6), (3, 4), (5, 2)])
def test_ntxent_at_zero_logits(n_views: int, n: int) -> None:
    views = randn(n_views, n, 3, seed=0) * 1e-9
    # every one of the V*N - 1 other rows is in the denominator; the mean positive logit is 0
    assert float(NTXent(similarity="dot")(views).loss) == pytest.approx(math.log(n_views * n - 1), abs=1e-9)


def test_ntxent_separated_views_reach_full_accuracy() -> None:
    samples = torch.eye(4, dtype=torch.float64)
    views = torch.stack([samples, samples + 0.01, samples - 0.01])
    out = NTXent(temperature=0.05)(views)
    assert float(out.parts["accuracy"]) == 1.0
    # both positives score about 1/tau = 20 and dominate the denominator: the loss tends to ln(V - 1)
    assert float(out.loss) == pytest.approx(math.log(2), abs=1e-3)


# ----------------------------------------------------------------------------- SupCon


@pytest.mark.parametrize(
    ("n_views", "labels"),
    [(1, [0, 1, 0, 1]), (1, [0, 0, 1, 2, 3]), (2, [0, 1, 2]), (2, [3, 3, 1, 3, 1]), (3, [0, 1, 0, 2])],
)
@pytest.mark.parametrize("kind", ["cosine", "dot"])
def test_supcon_matches_loops(n_views: int, labels: list[int], kind: str) -> None:
    loss = SupCon(similarity=kind).double()
    views = randn(n_views, len(labels), 4, seed=len(labels) + n_views, requires_grad=True)
    assert_value_and_grad(
        lambda: loss(views, torch.tensor(labels)).loss, lambda: ref_supcon(views, labels, 0.1, kind), [views]
    )


def test_supcon_accepts_a_single_view_of_shape_n_d() -> None:
    loss = SupCon().double()
    embeddings = randn(5, 3, seed=1)
    labels = torch.tensor([0, 1, 0, 1, 2])
    torch.testing.assert_close(loss(embeddings, labels).loss, loss(embeddings.unsqueeze(0), labels).loss)
    torch.testing.assert_close(loss(embeddings, labels).loss, ref_supcon(embeddings.unsqueeze(0), [0, 1, 0, 1, 2], 0.1))


def test_supcon_rows_without_positive_are_left_out() -> None:
    embeddings = randn(4, 3, seed=2)
    loss = SupCon().double()(embeddings, torch.tensor([0, 0, 1, 2]))
    # rows 2 and 3 have no positive: the mean runs over rows 0 and 1 only, whose
    # denominators still hold the singleton rows
    rows = []
    for i, p in ((0, 1), (1, 0)):
        scores = [ref_similarity(embeddings[i], embeddings[j], "cosine") / 0.1 for j in range(4)]
        rows.append(ref_row_loss(scores, [p], [j for j in range(4) if j != i]))
    torch.testing.assert_close(loss.loss, (rows[0] + rows[1]) / 2)


def test_supcon_raises_when_no_row_has_a_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SupCon()(randn(4, 3, seed=0), torch.tensor([0, 1, 2, 3]))


def test_supcon_with_distinct_labels_and_two_views_is_ntxent() -> None:
    views = randn(2, 5, 3, seed=3)
    supcon = SupCon(temperature=0.5)(views, torch.arange(5)).loss
    torch.testing.assert_close(supcon, NTXent(temperature=0.5)(views).loss)


def test_supcon_at_zero_logits() -> None:
    views = randn(2, 6, 3, seed=0) * 1e-9
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    assert float(SupCon(similarity="dot")(views, labels).loss) == pytest.approx(math.log(11), abs=1e-9)


# ----------------------------------------------------------------------------- CLIP


@pytest.mark.parametrize(("n", "d"), [(2, 3), (3, 2), (6, 5)])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_clip_matches_loops(n: int, d: int, temperature: float) -> None:
    loss = CLIPLoss(temperature=temperature).double()
    log_scale = loss.core.temperature.log_scale
    image, text = randn(n, d, seed=n, requires_grad=True), randn(n, d, seed=n + 100, requires_grad=True)
    assert_value_and_grad(
        lambda: loss(image, text).loss, lambda: ref_clip(image, text, log_scale), [image, text, log_scale]
    )


def test_clip_defaults_and_parts() -> None:
    loss = CLIPLoss()
    assert loss.core.temperature.learnable
    out = loss(randn(5, 4, seed=0).float(), randn(5, 4, seed=1).float())
    assert float(out.parts["logit_scale"]) == pytest.approx(1 / 0.07, rel=1e-5)
    assert float(out.parts["temperature"]) == pytest.approx(0.07, rel=1e-5)
    for name in ("accuracy", "accuracy_image_to_text", "accuracy_text_to_image", "alignment", "uniformity"):
        assert name in out.parts
    torch.testing.assert_close(out.parts["alignment"] + out.parts["uniformity"], out.loss.detach())


def test_clip_known_points() -> None:
    same = torch.ones(7, 4, dtype=torch.float64)
    # every cosine is 1, so every logit is equal: ln N in both directions
    assert CLIPLoss().double()(same, same).loss.item() == pytest.approx(math.log(7), abs=1e-12)
    basis = torch.eye(4, dtype=torch.float64)
    out = CLIPLoss(temperature=0.01).double()(basis, basis)
    assert 0.0 <= out.loss.item() < 1e-40  # each row: log(1 + 3 exp(-100))
    assert float(out.parts["accuracy_image_to_text"]) == float(out.parts["accuracy_text_to_image"]) == 1.0


def test_clip_learnable_temperature_gets_gradient_and_stays_in_bounds() -> None:
    loss = CLIPLoss()
    log_scale = loss.core.temperature.log_scale
    image, text = randn(6, 4, seed=0).float(), randn(6, 4, seed=1).float()
    loss(image, text).loss.backward()
    assert log_scale.grad is not None and torch.isfinite(log_scale.grad) and log_scale.grad.item() != 0.0
    start = log_scale.item()
    optimiser = torch.optim.SGD(loss.parameters(), lr=100.0)
    for _ in range(5):
        optimiser.zero_grad()
        out = loss(image, text)
        out.loss.backward()
        optimiser.step()
        assert 0.01 - 1e-6 <= out.parts["logit_scale"].item() <= 100.0 + 1e-4
    assert log_scale.item() != start
    for raw, clamped in ((50.0, 100.0), (-50.0, 0.01)):
        with torch.no_grad():
            log_scale.fill_(raw)
        assert loss(image, text).parts["logit_scale"].item() == pytest.approx(clamped, rel=1e-5)


# ----------------------------------------------------------------------------- SigLIP


@pytest.mark.parametrize(("n", "d"), [(1, 3), (4, 2), (6, 5)])
@pytest.mark.parametrize(("scale", "bias"), [(10.0, -10.0), (2.0, 0.5)])
def test_siglip_matches_loops(n: int, d: int, scale: float, bias: float) -> None:
    loss = SigLIPLoss(scale=scale, bias=bias).double()
    log_scale = loss.core.temperature.log_scale
    image, text = randn(n, d, seed=n, requires_grad=True), randn(n, d, seed=n + 50, requires_grad=True)
    assert_value_and_grad(
        lambda: loss(image, text).loss,
        lambda: ref_siglip(image, text, log_scale, loss.bias),
        [image, text, log_scale, loss.bias],
    )


@pytest.mark.parametrize("n", [1, 3, 8])
def test_siglip_is_ln_2_per_pair_at_zero_logits(n: int) -> None:
    same = torch.ones(n, 3, dtype=torch.float64)
    loss = SigLIPLoss(scale=10.0, bias=-10.0).double()
    with torch.no_grad():  # the float32 log 10 of the constructor, made exact in float64
        loss.core.temperature.log_scale.fill_(math.log(10.0))
    out = loss(same, same)  # t * 1 + b = 0 for every pair
    assert out.loss.item() == pytest.approx(n * math.log(2), abs=1e-9)
    assert float(out.parts["logit_scale"]) == pytest.approx(10.0)
    assert float(out.parts["bias"]) == -10.0


def test_siglip_scale_and_bias_learn_and_stay_in_bounds() -> None:
    loss = SigLIPLoss()
    image, text = randn(5, 4, seed=0).float(), randn(5, 4, seed=1).float()
    loss(image, text).loss.backward()
    for parameter in (loss.core.temperature.log_scale, loss.bias):
        assert parameter.grad is not None and float(parameter.grad) != 0.0
    with torch.no_grad():
        loss.core.temperature.log_scale.fill_(30.0)
    assert float(loss(image, text).parts["logit_scale"]) == pytest.approx(100.0)
    fixed = SigLIPLoss(learnable=False)
    assert not any(True for _ in fixed.parameters())


# ----------------------------------------------------------------------------- MoCo


@pytest.mark.parametrize(("n", "k", "d"), [(2, 1, 2), (4, 6, 3), (5, 10, 4)])
@pytest.mark.parametrize("kind", ["cosine", "dot"])
def test_moco_matches_loops(n: int, k: int, d: int, kind: str) -> None:
    loss = MoCoLoss(similarity=kind).double()
    query, key = randn(n, d, seed=1, requires_grad=True), randn(n, d, seed=2, requires_grad=True)
    queue = randn(k, d, seed=3, requires_grad=True)
    assert_value_and_grad(
        lambda: loss(query, key, queue).loss,
        lambda: ref_info_nce(query, key.detach(), queue.detach(), 0.2, kind, None, False),
        [query, key, queue],
    )
    assert_value_and_grad(
        lambda: loss(query, key).loss,
        lambda: ref_info_nce(query, key.detach(), None, 0.2, kind, None, False),
        [query, key],
    )


def test_moco_trains_only_the_query() -> None:
    query, key = randn(4, 3, seed=1, requires_grad=True), randn(4, 3, seed=2, requires_grad=True)
    queue = randn(8, 3, seed=3, requires_grad=True)
    grads = torch.autograd.grad(MoCoLoss()(query, key, queue).loss, [query, key, queue], allow_unused=True)
    assert grads[0] is not None and grads[1] is None and grads[2] is None


def test_moco_at_zero_logits() -> None:
    query, key, queue = (randn(*shape, seed=seed) * 1e-9 for seed, shape in enumerate([(4, 3), (4, 3), (9, 3)]))
    assert float(MoCoLoss(similarity="dot")(query, key, queue).loss) == pytest.approx(math.log(10), abs=1e-9)
    assert float(MoCoLoss().info_nce.core.temperature()) == pytest.approx(0.2)


# ----------------------------------------------------------------------------- bad input


def _nan(*shape: int) -> torch.Tensor:
    x = torch.randn(*shape)
    x.view(-1)[0] = float("nan")
    return x


BAD_CALLS = {
    # wrong rank
    "ntxent rank": (lambda: NTXent()(torch.randn(4, 3)), ValueError, "views"),
    "supcon rank": (lambda: SupCon()(torch.randn(2, 3, 4, 5), torch.zeros(3, dtype=torch.long)), ValueError, "views"),
    "clip rank": (lambda: CLIPLoss()(torch.randn(4), torch.randn(4, 3)), ValueError, "image"),
    "siglip rank": (lambda: SigLIPLoss()(torch.randn(4, 3), torch.randn(4, 3, 2)), ValueError, "text"),
    "moco rank": (lambda: MoCoLoss()(torch.randn(4), torch.randn(4, 3)), ValueError, "query"),
    "moco queue rank": (
        lambda: MoCoLoss()(torch.randn(4, 3), torch.randn(4, 3), torch.randn(2, 2, 3)),
        ValueError,
        "queue",
    ),
    "infonce negatives rank": (
        lambda: InfoNCE()(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2, 2, 3)),
        ValueError,
        "negatives",
    ),
    "ntxent one view": (lambda: NTXent()(torch.randn(1, 4, 3)), ValueError, "views"),
    "ntxent decoupled one sample": (lambda: NTXent(decoupled=True)(torch.randn(2, 1, 3)), ValueError, "views"),
    # mismatched N / dimension
    "clip n": (lambda: CLIPLoss()(torch.randn(4, 3), torch.randn(5, 3)), ValueError, "image and text"),
    "siglip d": (lambda: SigLIPLoss()(torch.randn(4, 3), torch.randn(4, 2)), ValueError, "image and text"),
    "moco n": (lambda: MoCoLoss()(torch.randn(4, 3), torch.randn(5, 3)), ValueError, "query and key"),
    "moco queue d": (lambda: MoCoLoss()(torch.randn(4, 3), torch.randn(4, 3), torch.randn(6, 2)), ValueError, "queue"),
    "infonce n": (lambda: InfoNCE()(torch.randn(4, 3), torch.randn(3, 3)), ValueError, "query and positive"),
    "infonce per-query n": (
        lambda: InfoNCE()(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 2, 3)),
        ValueError,
        "negatives",
    ),
    # NaN
    "ntxent nan": (lambda: NTXent()(_nan(2, 4, 3)), ValueError, "views"),
    "supcon nan": (lambda: SupCon()(_nan(4, 3), torch.zeros(4, dtype=torch.long)), ValueError, "views"),
    "clip nan": (lambda: CLIPLoss()(torch.randn(4, 3), _nan(4, 3)), ValueError, "text"),
    "siglip nan": (lambda: SigLIPLoss()(_nan(4, 3), torch.randn(4, 3)), ValueError, "image"),
    "moco nan": (lambda: MoCoLoss()(torch.randn(4, 3), _nan(4, 3)), ValueError, "key"),
    "moco queue nan": (lambda: MoCoLoss()(torch.randn(4, 3), torch.randn(4, 3), _nan(6, 3)), ValueError, "queue"),
    "infonce nan": (lambda: InfoNCE()(_nan(4, 3), torch.randn(4, 3)), ValueError, "query"),
    # temperature <= 0
    "ntxent temperature": (lambda: NTXent(temperature=0.0), ValueError, "temperature"),
    "supcon temperature": (lambda: SupCon(temperature=-1.0), ValueError, "temperature"),
    "clip temperature": (lambda: CLIPLoss(temperature=0.0), ValueError, "temperature"),
    "moco temperature": (lambda: MoCoLoss(temperature=-0.2), ValueError, "temperature"),
    "infonce temperature": (lambda: InfoNCE(temperature=0.0), ValueError, "temperature"),
    "siglip scale": (lambda: SigLIPLoss(scale=0.0), ValueError, "scale"),
    "siglip scale bounds": (lambda: SigLIPLoss(scale=1000.0), ValueError, "scale"),
    "siglip bias": (lambda: SigLIPLoss(bias=float("nan")), ValueError, "bias"),
    # empty batch
    "ntxent empty": (lambda: NTXent()(torch.randn(2, 0, 3)), ValueError, "views"),
    "supcon empty": (lambda: SupCon()(torch.randn(0, 3), torch.zeros(0, dtype=torch.long)), ValueError, "views"),
    "clip empty": (lambda: CLIPLoss()(torch.randn(0, 3), torch.randn(0, 3)), ValueError, "image"),
    "siglip empty": (lambda: SigLIPLoss()(torch.randn(0, 3), torch.randn(0, 3)), ValueError, "image"),
    "moco empty": (lambda: MoCoLoss()(torch.randn(0, 3), torch.randn(0, 3)), ValueError, "query"),
    "infonce empty": (lambda: InfoNCE()(torch.randn(0, 3), torch.randn(0, 3)), ValueError, "query"),
    # labels
    "supcon labels length": (
        lambda: SupCon()(torch.randn(2, 4, 3), torch.zeros(5, dtype=torch.long)),
        ValueError,
        "labels",
    ),
    "supcon labels 2d": (
        lambda: SupCon()(torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long)),
        ValueError,
        "labels",
    ),
    "supcon labels float": (lambda: SupCon()(torch.randn(4, 3), torch.zeros(4)), TypeError, "labels"),
    "supcon labels list": (lambda: SupCon()(torch.randn(4, 3), [0, 0, 1, 1]), TypeError, "labels"),
    # not tensors / not floating
    "clip list": (lambda: CLIPLoss()([[0.0]], torch.randn(1, 1)), TypeError, "image"),
    "ntxent int": (lambda: NTXent()(torch.zeros(2, 3, 4, dtype=torch.long)), TypeError, "views"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_names_the_argument(case: str) -> None:
    call, error, name = BAD_CALLS[case]
    with pytest.raises(error, match=name):
        call()
