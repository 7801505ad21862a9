"""The gradient cache gives the parameter gradients of one backward pass through the whole batch.

Each test builds a small float64 model, computes the loss of a batch whose
size is not a multiple of the chunk once plainly (one graph through the whole
batch) and once through :class:`GradientCache`, and compares every parameter
gradient, the loss's own parameters (learnable temperature) included, to 1e-9.
With dropout, the reference embeds the same chunks in one graph from the same
random state, so the replay of the random streams is checked too. A Trainer
run with the cache ends at the weights of a run without it.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from shared_checks import LargestTensor, leaving_process_group
from torch import nn

from contrastive_seq.data import ArrayDataset
from contrastive_seq.losses.clip import CLIPLoss
from contrastive_seq.losses.ntxent import NTXent
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.training.gradient_cache import GradientCache
from contrastive_seq.views import TransformedViews

TOL = 1e-9
IN_DIM, TEXT_DIM, OUT_DIM = 6, 9, 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation (and stalls on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class SimCLRLike(nn.Module):
    """An MLP (optionally with dropout) and NT-Xent with a learnable temperature."""

    def __init__(self, dropout: float = 0.0, block_size: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(
            nn.Linear(IN_DIM, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, OUT_DIM), nn.LayerNorm(OUT_DIM)
        )
        self.loss = NTXent(block_size=block_size, learnable_temperature=True, temperature=0.3)
        self.double()

    def views_loss(self, embeddings: torch.Tensor) -> LossOutput:
        return self.loss(rearrange(embeddings, "(v n) d -> v n d", v=2))


class CLIPLike(nn.Module):
    """Two towers of different input sizes and CLIP's loss (learnable temperature)."""

    def __init__(self, block_size: int | None = None):
        super().__init__()
        torch.manual_seed(1)
        self.image = nn.Sequential(nn.Linear(IN_DIM, 8), nn.GELU(), nn.Linear(8, OUT_DIM))
        self.text = nn.Sequential(nn.Linear(TEXT_DIM, OUT_DIM), nn.Dropout(0.2))
        self.loss = CLIPLoss(block_size=block_size)
        self.double()


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_grads(cached: dict[str, torch.Tensor], plain: dict[str, torch.Tensor]) -> None:
    assert cached.keys() == plain.keys()
    for name in plain:
        assert plain[name].abs().sum() > 0, f"{name} has no gradient: the test would prove nothing"
        torch.testing.assert_close(cached[name], plain[name], rtol=TOL, atol=TOL, msg=name)


@pytest.mark.parametrize(("rows", "chunk"), [(2 * 37, 8), (2 * 16, 16), (2 * 5, 100), (2 * 9, 1)])
@pytest.mark.parametrize("block_size", [None, 5])
def test_simclr_gradients_equal_the_whole_batch(rows: int, chunk: int, block_size: int | None) -> None:
    model, inputs = SimCLRLike(block_size=block_size), randn(rows, IN_DIM, seed=rows)
    plain = model.views_loss(model.encoder(inputs))
    plain.loss.backward()
    plain_grads = grads(model)
    cached = GradientCache(chunk)(model, [(model.encoder, inputs)], lambda z: model.views_loss(z[0]))
    cached.loss.backward()
    torch.testing.assert_close(cached.loss, plain.loss.detach(), rtol=TOL, atol=TOL)
    assert cached.parts.keys() == plain.parts.keys()
    assert_same_grads(grads(model), plain_grads)


def test_dropout_is_replayed_per_chunk_and_the_streams_end_where_one_pass_leaves_them() -> None:
    model, inputs, chunk = SimCLRLike(dropout=0.3), randn(2 * 13, IN_DIM, seed=3), 6
    torch.manual_seed(123)
    # the reference: the same chunks from the same random state, in one graph
    plain = model.views_loss(torch.cat([model.encoder(c) for c in inputs.split(chunk)]))
    plain.loss.backward()
    after_plain = torch.rand(3)
    plain_grads = grads(model)
    torch.manual_seed(123)
    cached = GradientCache(chunk)(model, [(model.encoder, inputs)], lambda z: model.views_loss(z[0]))
    cached.loss.backward()
    assert torch.equal(torch.rand(3), after_plain)
    torch.testing.assert_close(cached.loss, plain.loss.detach(), rtol=TOL, atol=TOL)
    assert_same_grads(grads(model), plain_grads)
    # and without the replay the second run would draw other masks: the check above can fail
    torch.manual_seed(123)
    assert not torch.equal(model.encoder(inputs[:chunk]), model.encoder(inputs[:chunk]))


@pytest.mark.parametrize("block_size", [None, 4])
def test_two_towers_clip(block_size: int | None) -> None:
    model = CLIPLike(block_size=block_size)
    image, text, chunk = randn(23, IN_DIM, seed=0), randn(23, TEXT_DIM, seed=1), 5
    torch.manual_seed(7)
    plain = model.loss(
        torch.cat([model.image(c) for c in image.split(chunk)]), torch.cat([model.text(c) for c in text.split(chunk)])
    )
    plain.loss.backward()
    plain_grads = grads(model)
    torch.manual_seed(7)
    cached = GradientCache(chunk)(model, [(model.image, image), (model.text, text)], lambda z: model.loss(*z))
    cached.loss.backward()
    assert_same_grads(grads(model), plain_grads)
    for name, value in plain.parts.items():
        torch.testing.assert_close(cached.parts[name], value, rtol=TOL, atol=TOL, msg=name)


def test_activations_never_exceed_one_chunk() -> None:
    """Every float tensor created in the cached forward and backward is at most one chunk of hidden activations."""

    hidden, rows, chunk = 64, 2 * 37, 8
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(IN_DIM, hidden), nn.Tanh(), nn.Linear(hidden, OUT_DIM)).double()
    loss = NTXent(block_size=4)
    inputs = randn(rows, IN_DIM, seed=8)
    sizes = {}
    def views_loss(z: list[torch.Tensor]) -> LossOutput:
        return loss(rearrange(z[0], "(v n) d -> v n d", v=2))

    for name, step in (
        ("plain", lambda: views_loss([encoder(inputs)])),
        ("cached", lambda: GradientCache(chunk)(encoder, [(encoder, inputs)], views_loss)),
    ):
        probe = LargestTensor(floating_only=True)
        with probe:
            step().loss.backward()
        sizes[name] = probe.largest
    assert sizes["plain"] >= rows * hidden
    assert sizes["cached"] <= chunk * hidden


def test_frozen_and_ignored_towers_keep_the_other_towers_replay() -> None:
    """A locked tower (LiT) gets no gradient; a tower the loss ignores must not shift the others' random streams."""
    image, text, chunk = randn(20, IN_DIM, seed=0), randn(20, TEXT_DIM, seed=1), 6
    for case in ("frozen_image", "ignored_image"):
        model = CLIPLike()
        ntxent = NTXent(temperature=0.4)
        if case == "frozen_image":
            model.image.requires_grad_(False)

            def loss(z: list[torch.Tensor]) -> LossOutput:
                return model.loss(*z)
        else:

            def loss(z: list[torch.Tensor]) -> LossOutput:  # the text tower alone, its dropout drawn per chunk
                return ntxent(rearrange(z[1], "(v n) d -> v n d", v=2))

        torch.manual_seed(3)
        images = torch.cat([model.image(c) for c in image.split(chunk)])
        plain = loss([images, torch.cat([model.text(c) for c in text.split(chunk)])])
        plain.loss.backward()
        plain_grads = grads(model)
        torch.manual_seed(3)
        cached = GradientCache(chunk)(model, [(model.image, image), (model.text, text)], loss)
        cached.loss.backward()
        cached_grads = grads(model)
        assert not any(name.startswith("image") for name in cached_grads)
        assert_same_grads(cached_grads, plain_grads)


def test_upstream_gradient_scales_the_cached_ones() -> None:
    """A loss scaler multiplies the loss: the cached gradients must follow, as a plain backward does."""
    model, inputs = SimCLRLike(), randn(12, IN_DIM, seed=4)
    (model.views_loss(model.encoder(inputs)).loss * 1024.0).backward()
    plain_grads = grads(model)
    cached = GradientCache(5)(model, [(model.encoder, inputs)], lambda z: model.views_loss(z[0]))
    (cached.loss * 1024.0).backward()
    assert_same_grads(grads(model), plain_grads)


def test_batchnorm_in_training_mode_is_refused_and_eval_mode_is_fine() -> None:
    model = nn.Sequential(nn.Linear(IN_DIM, OUT_DIM), nn.BatchNorm1d(OUT_DIM)).double()
    loss = NTXent()
    inputs = randn(10, IN_DIM, seed=5)

    def views_loss(z: list[torch.Tensor]) -> LossOutput:
        return loss(rearrange(z[0], "(v n) d -> v n d", v=2))

    with pytest.raises(ValueError, match=r"model\.1 is a BatchNorm1d in training mode"):
        GradientCache(4)(model, [(model, inputs)], views_loss)
    model.eval()
    cached = GradientCache(4)(model, [(model, inputs)], views_loss)
    cached.loss.backward()
    cached_grads = grads(model)
    views_loss([model(inputs)]).loss.backward()
    assert_same_grads(cached_grads, grads(model))


def test_bad_arguments_are_named() -> None:
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match="chunk_size"):
            GradientCache(bad)
    model = SimCLRLike()
    cache = GradientCache(4)
    with pytest.raises(ValueError, match="towers"):
        cache(model, [], lambda z: None)
    with pytest.raises(TypeError, match=r"towers\[0\]"):
        cache(model, [model.encoder], lambda z: None)
    with pytest.raises(TypeError, match="LossOutput"):
        cache(model, [(model.encoder, randn(4, IN_DIM, seed=0))], lambda z: z[0].sum())
    with pytest.raises(TypeError, match="model"):
        cache("model", [(model.encoder, randn(4, IN_DIM, seed=0))], lambda z: model.views_loss(z[0]))


# ----------------------------------------------------------------------------- under the Trainer


class ChunkedSimCLR(Method):
    """SimCLR on a small MLP, its loss computed plainly or through a gradient cache."""

    def __init__(self, chunk_size: int | None):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(IN_DIM, 12), nn.Tanh(), nn.Dropout(0.1), nn.Linear(12, OUT_DIM))
        self.loss = NTXent(block_size=4, learnable_temperature=True)
        self.cache = None if chunk_size is None else GradientCache(chunk_size)

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:  # noqa: D102
        views = batch["views"]
        rows = rearrange(views, "v n d -> (v n) d")

        def loss(z: list[torch.Tensor]) -> LossOutput:
            return self.loss(rearrange(z[0], "(v n) d -> v n d", v=views.shape[0]))

        if self.cache is None:  # the reference embeds the cache's chunks, so that dropout draws the same masks
            return loss([torch.cat([self.encoder(c) for c in rows.split(7)])])
        return self.cache(self, [(self.encoder, rows)], loss)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.encoder(x)


def test_trainer_with_a_gradient_cache_reaches_the_same_weights() -> None:
    data = ArrayDataset(randn(40, IN_DIM, seed=6).float())
    final = {}
    for chunk in (None, 7):
        config = TrainerConfig(max_steps=4, batch_size=12, lr=0.05, device="cpu", progress=False, seed=3)
        views = TransformedViews(lambda x: x + 0.1 * torch.randn_like(x))
        trainer = Trainer(ChunkedSimCLR(chunk), config, data, AugmentationSampler(40), views)
        trainer.fit()
        final[chunk] = trainer.method.state_dict()
    moved = False
    for name, value in final[None].items():
        torch.testing.assert_close(final[7][name], value, rtol=1e-5, atol=1e-6, msg=name)
        moved |= name.startswith("encoder") and not torch.equal(value, ChunkedSimCLR(None).state_dict()[name])
    assert moved


# ----------------------------------------------------------------------------- under DDP, negatives gathered

WORLD, SAMPLES = 2, 10


class _DDPHarness(nn.Module):
    """SimCLRLike whose forward(views (2, N, IN_DIM)) goes through a gradient cache of 3 rows, or plainly."""

    def __init__(self, chunk_size: int | None):
        super().__init__()
        self.inner = SimCLRLike(block_size=4)
        self.cache = None if chunk_size is None else GradientCache(chunk_size)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        rows = rearrange(views, "v n d -> (v n) d")
        if self.cache is None:
            return self.inner.views_loss(self.inner.encoder(rows)).loss
        return self.cache(self, [(self.inner.encoder, rows)], lambda z: self.inner.views_loss(z[0])).loss


def _global_views() -> torch.Tensor:
    return randn(2, SAMPLES, IN_DIM, seed=11)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    with leaving_process_group():
        model = _DDPHarness(chunk_size=3)
        ddp = DistributedDataParallel(model)
        rows = SAMPLES // WORLD
        loss = ddp(_global_views().narrow(1, rank * rows, rows))
        loss.backward()
        torch.save((loss.detach(), grads(model)), f"{out_dir}/rank{rank}.pt")


def test_ddp_with_gathered_negatives_matches_one_process(tmp_path) -> None:  # noqa: ANN001
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    model = _DDPHarness(chunk_size=None)
    single = model(_global_views())
    single.backward()
    plain_grads = grads(model)
    torch.testing.assert_close(torch.stack([r[0] for r in ranks]).mean(), single.detach(), rtol=TOL, atol=TOL)
    for _, rank_grads in ranks:
        assert_same_grads(rank_grads, plain_grads)
