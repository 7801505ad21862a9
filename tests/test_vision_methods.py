"""Vision methods on tiny data: learning, exact EMA / queue / centre updates, and clear errors for bad batches."""

import copy
from dataclasses import replace

import pytest
import torch

from contrastive_seq.data import ArrayDataset
from contrastive_seq.losses import BYOLLoss, DINOLoss, MoCoLoss, NTXent
from contrastive_seq.losses import SupCon as SupConLoss
from contrastive_seq.methods.byol import BYOL
from contrastive_seq.methods.dino import DINO
from contrastive_seq.methods.moco import MoCo
from contrastive_seq.methods.simclr import SimCLR
from contrastive_seq.methods.supcon import SupCon
from contrastive_seq.models import MLPHead, SmallConvNet
from contrastive_seq.models.backbones import encode_views
from contrastive_seq.models.dino_head import DINOHead
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views.multicrop import MultiCropViews

N, SIZE = 8, 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def encoder():
    return SmallConvNet(1, (8, 16))


def head(out=12):
    return MLPHead(16, 32, out)


def make(name):
    """A small method of each kind on 1x8x8 images."""
    torch.manual_seed(0)
    if name == "simclr":
        return SimCLR(encoder(), head(), NTXent(temperature=0.2))
    if name == "moco_v2":
        return MoCo(encoder(), head(), MoCoLoss(), queue_size=2 * N, base_momentum=0.9, momentum_steps=20)
    if name == "moco_v2_symmetric":
        return MoCo(encoder(), head(), MoCoLoss(), queue_size=4 * N, symmetric=True, base_momentum=0.9)
    if name == "moco_v3":
        return MoCo(encoder(), head(), MoCoLoss(), predictor=MLPHead(12, 16, 12), queue_size=None, symmetric=True)
    if name == "byol":
        return BYOL(encoder(), head(), MLPHead(12, 16, 12), BYOLLoss(), base_momentum=0.9, momentum_steps=20)
    if name == "dino":
        loss = DINOLoss(10, teacher_temperature=0.04, warmup_teacher_temperature=0.02, warmup_steps=5)
        return DINO(encoder(), DINOHead(16, 10, 32, 8), loss, base_momentum=0.9, momentum_steps=20)
    if name == "dino_frozen_teacher":  # DINO's loss follows its moving teacher and centre; held still, it must fall
        loss = DINOLoss(10, teacher_temperature=0.04, center_momentum=0.0)
        return DINO(encoder(), DINOHead(16, 10, 32, 8), loss, base_momentum=1.0)
    if name == "supcon":
        return SupCon(encoder(), head(), SupConLoss(temperature=0.2))
    raise AssertionError(name)


METHODS = ["simclr", "moco_v2", "moco_v2_symmetric", "moco_v3", "byol", "dino", "supcon"]
LEARNERS = [name for name in METHODS if name != "dino"] + ["dino_frozen_teacher"]
TEACHERS = {"moco_v2": ("momentum_encoder", "online"), "byol": ("target", "online"), "dino": ("teacher", "student")}


def batch(n=N, seed=0, local=True):
    """Two noisy views of n images (and two small local crops), labels in two classes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, SIZE, SIZE, generator=g)
    views = torch.stack([images + 0.1 * torch.randn(images.shape, generator=g) for _ in range(2)])
    out = {"views": views, "labels": torch.arange(n) % 2, "index": torch.arange(n)}
    if local:
        out["local_views"] = views[:, :, :, :4, :4] + 0.1 * torch.randn(2, n, 1, 4, 4, generator=g)
    return out


def train(method, steps, lr=1e-2, cycle=4):
    """Adam on ``cycle`` fixed batches in turn (so that a queue of two steps' keys never holds the current images)."""
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
    batches = [batch(seed=seed) for seed in range(cycle)]
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        out = method.training_step(batches[step % cycle])
        out.loss.backward()
        optimizer.step()
        method.after_step(step)
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize("name", LEARNERS)
def test_each_method_learns_on_tiny_data(name):
    method = make(name)
    losses = train(method, 24)
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4  # the same four batches
    assert last < 0.9 * first, losses
    embedding = method.embed(batch()["views"][0])
    assert embedding.shape == (N, 16)


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_teacher_after_one_step_is_the_momentum_average(name):
    """θ_t(1) = m θ_t(0) + (1 - m) θ_s(1), with m the scheduled momentum of step 0."""
    method = make(name)
    teacher_name, student_name = TEACHERS[name]
    teacher, student = getattr(method, teacher_name), getattr(method, student_name)
    with torch.no_grad():  # make teacher and student differ before the step
        for p in teacher.module.parameters():
            p.add_(0.05)
    before = [p.clone() for p in teacher.module.parameters()]
    train(method, 1)
    m = teacher.momentum_at(0)
    assert m == pytest.approx(0.9)
    for t, t0, s in zip(teacher.module.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(t, m * t0 + (1 - m) * s, rtol=1e-6, atol=1e-7)
    assert teacher.momentum_at(20) == 1.0


@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_enqueues_exactly_the_keys_of_the_step(symmetric):
    method = make("moco_v2_symmetric" if symmetric else "moco_v2")
    data = batch()
    initial = method.queue.keys.clone()
    key_encoder = copy.deepcopy(method.momentum_encoder)
    key_views = data["views"].flip(0) if symmetric else data["views"][1:]
    expected = encode_views(key_encoder, key_views).flatten(0, 1)  # the keys, before the EMA moves
    train(method, 1)
    rows = expected.shape[0]
    assert rows == (2 * N if symmetric else N)
    assert torch.equal(method.queue.keys[:rows], expected)
    assert torch.equal(method.queue.keys[rows:], initial[rows:])
    assert int(method.queue.pointer) == rows


def test_moco_scores_queries_against_the_queue_before_it_is_updated():
    method = make("moco_v2")
    data = batch()
    queue = method.queue.keys.clone()
    with torch.no_grad():
        queries = method.online(data["views"][0])
        keys = method.momentum_encoder(data["views"][1])
        out = method.training_step(data)
    torch.testing.assert_close(out.loss, MoCoLoss()(queries, keys, queue).loss)


def test_dino_updates_the_centre_from_the_teacher_on_global_crops():
    method = make("dino")
    data = batch()
    teacher = copy.deepcopy(method.teacher)
    expected_mean = encode_views(teacher, data["views"]).mean((0, 1))  # both global crops in one batch
    assert torch.equal(method.loss.center, torch.zeros(10))
    train(method, 1)
    torch.testing.assert_close(method.loss.center, 0.1 * expected_mean, rtol=1e-5, atol=1e-7)
    assert int(method.steps_done) == 1
    out = method.training_step(data)  # the second step uses the warm-up temperature of step 1
    assert float(out.parts["teacher_temperature"]) == pytest.approx(method.loss.teacher_temperature_at(1))


def test_dino_embeds_with_the_teacher_backbone():
    method = make("dino")
    x = batch()["views"][0]
    method.eval()
    torch.testing.assert_close(method.embed(x), method.teacher.module[0](x))


@pytest.mark.parametrize("name", METHODS)
def test_images_of_wrong_rank_or_channels_are_refused(name):
    method = make(name)
    good = batch()
    wrong_rank = dict(good, views=good["views"][:, :, 0])  # (V, N, H, W)
    with pytest.raises(ValueError, match=r"views|images must have shape"):
        method.training_step(wrong_rank)
    wrong_channels = dict(good, views=good["views"].expand(2, N, 3, SIZE, SIZE).contiguous())
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, H, W\)"):
        method.training_step(wrong_channels)


@pytest.mark.parametrize("name", ["simclr", "moco_v3", "supcon"])
def test_in_batch_negatives_need_two_images(name):
    method = make(name)
    one = batch(n=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        method.training_step(one)


def test_moco_refuses_a_queue_that_the_batch_does_not_divide_before_any_update():
    torch.manual_seed(0)
    method = MoCo(encoder(), head(), MoCoLoss(), queue_size=10)
    before = copy.deepcopy(method.state_dict())
    with pytest.raises(ValueError, match="queue_size=10 must be a multiple of the 8 keys"):
        method.training_step(batch())
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    symmetric = MoCo(encoder(), head(), MoCoLoss(), queue_size=24, symmetric=True)
    with pytest.raises(ValueError, match="multiple of the 16 keys"):
        symmetric.training_step(batch())


@pytest.mark.parametrize("name", ["moco_v2", "byol"])
def test_two_view_methods_refuse_more_views(name):
    data = batch()
    with pytest.raises(ValueError, match="at most 2 views"):
        make(name).training_step(dict(data, views=torch.cat([data["views"], data["views"][:1]])))


def test_supcon_needs_labels_that_match_the_batch():
    method = make("supcon")
    data = batch()
    with pytest.raises(ValueError, match="labels"):
        method.training_step({"views": data["views"]})
    with pytest.raises(ValueError, match=r"batch\['labels'\] must have shape \(8,\)"):
        method.training_step(dict(data, labels=torch.arange(3)))


def test_dino_needs_two_global_crops_and_matching_local_crops():
    method = make("dino")
    data = batch()
    with pytest.raises(ValueError, match="at least 2 views"):
        method.training_step(dict(data, views=data["views"][:1]))
    with pytest.raises(ValueError, match="must hold N = 8 images"):
        method.training_step(dict(data, local_views=data["local_views"][:, :3]))


@pytest.mark.parametrize("name", ["moco_v2", "dino"])
def test_resumed_training_equals_training_straight_through(name, tmp_path):
    """Queue, pointer, teacher, centre and step count live in the checkpoint: a run that crashes after
    its step-3 checkpoint and resumes ends with the weights and buffers of a run straight through."""
    data = ArrayDataset(torch.rand(32, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    views = MultiCropViews([lambda x: x + 0.1 * torch.randn_like(x), lambda x: x.flip(-1)], lambda x: x[:, :4, :4], 2)
    config = TrainerConfig(max_steps=6, batch_size=N, lr=1e-2, progress=False, checkpoint_every=3)

    def trainer(output_dir, crash_at=None):
        method = make(name)
        if crash_at is not None:
            update = method.after_step

            def after_step(step):
                update(step)
                if step == crash_at:
                    raise RuntimeError("simulated crash")

            method.after_step = after_step
        return Trainer(method, replace(config, output_dir=output_dir), data, AugmentationSampler(len(data)), views)

    straight = trainer(tmp_path / "straight")
    straight.fit()
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "resumed", crash_at=3).fit()  # dies in its 4th step, after the checkpoint of step 3
    resumed = trainer(tmp_path / "resumed")
    resumed.fit()
    expected, actual = straight.method.state_dict(), resumed.method.state_dict()
    assert set(expected) == set(actual)
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key
