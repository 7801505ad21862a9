"""Vision models: torchvision backbones by name, the EMA copy and its schedule, MoCo's queue, DINO's head."""

import copy
import math

import pytest
import torch
from torch import nn

from contrastive_seq.models.backbones import (
    ResNetBackbone,
    ViTBackbone,
    encode_views,
    image_backbone,
)
from contrastive_seq.models.dino_head import DINOHead
from contrastive_seq.models.ema import EMACopy, cosine_momentum
from contrastive_seq.models.queue import KeyQueue


@pytest.mark.parametrize(
    "name,channels,small,size,dim",
    [("resnet18", 1, True, 28, 512), ("resnet18", 3, False, 64, 512), ("resnet50", 3, True, 8, 2048)],
)
def test_resnets_by_name_map_images_to_output_dim(name, channels, small, size, dim):
    torch.manual_seed(0)
    backbone = image_backbone(name, in_channels=channels, small_images=small).eval()
    assert isinstance(backbone, ResNetBackbone) and backbone.output_dim == dim
    assert backbone.network.conv1.in_channels == channels
    with torch.no_grad():
        assert backbone(torch.rand(2, channels, size, size)).shape == (2, dim)


def test_small_image_stem_keeps_the_resolution():
    small = image_backbone("resnet18", in_channels=1, small_images=True)
    assert small.network.conv1.kernel_size == (3, 3) and small.network.conv1.stride == (1, 1)
    assert isinstance(small.network.maxpool, nn.Identity)
    standard = image_backbone("resnet18", in_channels=1)
    assert standard.network.conv1.kernel_size == (7, 7) and standard.network.conv1.stride == (2, 2)
    x = torch.rand(1, 1, 32, 32)
    stem_small = small.network.maxpool(small.network.relu(small.network.bn1(small.network.conv1(x))))
    stem_standard = standard.network.maxpool(standard.network.relu(standard.network.bn1(standard.network.conv1(x))))
    assert stem_small.shape[-1] == 32 and stem_standard.shape[-1] == 8


def test_vit_takes_grey_images_and_other_resolutions():
    torch.manual_seed(0)
    vit = image_backbone("vit_tiny", in_channels=1, image_size=16, patch_size=4).eval()
    assert isinstance(vit, ViTBackbone) and vit.output_dim == 192
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        at_size = vit(x)
        local_crop = vit(torch.rand(2, 1, 8, 8))  # 2x2 patches: interpolated position embedding
        torch.testing.assert_close(at_size, vit.network(x))  # torchvision's forward, heads removed
    assert at_size.shape == local_crop.shape == (2, 192)
    assert vit.position_embedding(4, 4) is vit.network.encoder.pos_embedding
    assert vit.position_embedding(2, 3).shape == (1, 1 + 6, 192)


def test_torchvision_vit_by_name():
    vit = image_backbone("vit_b_32", image_size=32)
    assert vit.output_dim == 768 and vit.patch_size == 32 and isinstance(vit.network.heads, nn.Identity)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "resnet18", "in_channels": 0}, "in_channels"),
        ({"name": "alexnet"}, "ResNet or ViT"),
        ({"name": "nonesuch"}, "name"),
        ({"name": "vit_tiny"}, "image_size"),
        ({"name": "vit_tiny", "image_size": 30, "patch_size": 4}, "multiple of patch_size"),
        ({"name": "vit_tiny", "image_size": 32, "small_images": True}, "small_images"),
        ({"name": "resnet18", "image_size": 32}, "image_size applies to ViTs"),
        ({"name": "resnet18", "patch_size": 4}, "patch_size"),
    ],
)
def test_bad_backbone_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_backbone(**kwargs)


@pytest.mark.parametrize("shape", [(2, 28, 28), (2, 3, 28, 28), (1, 2, 1, 28, 28)])
def test_backbones_refuse_images_of_wrong_rank_or_channels(shape):
    backbone = image_backbone("resnet18", in_channels=1, small_images=True)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, H, W\)"):
        backbone(torch.rand(shape))


def test_vit_refuses_sizes_that_are_not_multiples_of_the_patch():
    vit = image_backbone("vit_tiny", in_channels=1, image_size=16, patch_size=4)
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        vit(torch.rand(1, 1, 10, 10))


def test_encode_views_is_the_network_on_each_view():
    network = nn.Linear(12, 5)
    views = torch.randn(3, 4, 1, 3, 4)
    expected = torch.stack([network(v.flatten(1)) for v in views])
    torch.testing.assert_close(encode_views(nn.Sequential(nn.Flatten(), network), views), expected)


# ----------------------------------------------------------------------------- EMA


def test_cosine_momentum_follows_its_formula():
    base, final, total = 0.9, 1.0, 10
    for step in range(15):
        k = min(step, total)
        expected = final - (final - base) * (1 + math.cos(math.pi * k / total)) / 2
        assert cosine_momentum(step, total, base, final) == pytest.approx(expected, abs=1e-15)
    assert cosine_momentum(0, total, base) == pytest.approx(base)
    assert cosine_momentum(5, total, base) == pytest.approx((base + final) / 2)
    assert cosine_momentum(10, total, base) == cosine_momentum(99, total, base) == pytest.approx(final)


def test_ema_blend_is_exact_on_dyadic_values():
    """θ_t <- m θ_t + (1 - m) θ_s with numbers that floating point represents exactly."""
    source = nn.Linear(3, 2)
    ema = EMACopy(source)
    with torch.no_grad():
        for i, parameter in enumerate(ema.module.parameters()):
            parameter.copy_(torch.arange(parameter.numel(), dtype=torch.float32).reshape(parameter.shape) / 8 + i)
        for i, parameter in enumerate(source.parameters()):
            parameter.copy_(-torch.arange(parameter.numel(), dtype=torch.float32).reshape(parameter.shape) / 4 - i)
    before = [p.clone() for p in ema.module.parameters()]
    ema.blend(source, 0.75)
    for teacher, old, student in zip(ema.module.parameters(), before, source.parameters()):
        assert torch.equal(teacher, 0.75 * old + 0.25 * student)


def test_ema_update_uses_the_scheduled_momentum_and_needs_no_gradient():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = EMACopy(source, base_momentum=0.9, final_momentum=1.0, total_steps=4)
    assert all(not p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in ema.module.parameters()]
    used = ema.update(source, step=1)
    assert used == pytest.approx(cosine_momentum(1, 4, 0.9, 1.0))
    for teacher, old, student in zip(ema.module.parameters(), before, source.parameters()):
        torch.testing.assert_close(teacher, used * old + (1 - used) * student, rtol=1e-6, atol=1e-7)
    assert ema.update(source, step=4) == 1.0
    assert not ema(torch.randn(3, 4)).requires_grad


def test_ema_without_schedule_keeps_the_base_momentum_and_checks_arguments():
    ema = EMACopy(nn.Linear(2, 2), base_momentum=0.5)
    assert ema.momentum_at(0) == ema.momentum_at(1000) == 0.5
    with pytest.raises(ValueError, match="base_momentum"):
        EMACopy(nn.Linear(2, 2), base_momentum=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        EMACopy(nn.Linear(2, 2), total_steps=0)
    with pytest.raises(ValueError, match="source must have the parameters"):
        ema.blend(nn.Linear(3, 2), 0.5)


# ----------------------------------------------------------------------------- queue


def test_queue_enqueues_in_order_and_wraps_around():
    queue = KeyQueue(size=6, dim=2)
    initial = queue.keys.clone()
    assert torch.allclose(initial.norm(dim=1), torch.ones(6))
    first = torch.arange(4.0).reshape(2, 2)
    queue.enqueue(first)
    assert torch.equal(queue.keys[:2], first) and torch.equal(queue.keys[2:], initial[2:])
    assert int(queue.pointer) == 2
    second, third, fourth = first + 10, first + 20, first + 30
    queue.enqueue(second)
    queue.enqueue(third)
    assert int(queue.pointer) == 0
    assert torch.equal(queue.keys, torch.cat([first, second, third]))
    queue.enqueue(fourth)  # the oldest batch goes first
    assert torch.equal(queue.keys, torch.cat([fourth, second, third]))
    assert int(queue.pointer) == 2


def test_queue_state_is_saved_with_the_module():
    queue = KeyQueue(4, 3)
    queue.enqueue(torch.ones(2, 3))
    state = queue.state_dict()
    other = KeyQueue(4, 3)
    other.load_state_dict(state)
    assert torch.equal(other.keys, queue.keys) and int(other.pointer) == 2


@pytest.mark.parametrize("size,dim", [(0, 3), (4, 0), (2.5, 3)])
def test_queue_arguments_are_checked(size, dim):
    with pytest.raises(ValueError):
        KeyQueue(size, dim)


def test_queue_refuses_batches_that_do_not_divide_it():
    queue = KeyQueue(10, 2)
    with pytest.raises(ValueError, match="queue_size=10 must be a multiple of the 4 keys"):
        queue.enqueue(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"keys must have shape \(B, 2\)"):
        queue.enqueue(torch.zeros(5, 3))


# ----------------------------------------------------------------------------- DINO head


def test_dino_head_outputs_cosines_to_prototypes():
    torch.manual_seed(0)
    head = DINOHead(16, out_dim=10, hidden_dim=32, bottleneck_dim=8)
    x = torch.randn(5, 16)
    out = head(x)
    assert out.shape == (5, 10) and head.output_dim == 10
    bottleneck = nn.functional.normalize(head.mlp(x), dim=-1)
    prototypes = nn.functional.normalize(head.last_layer.parametrizations.weight.original1, dim=-1)
    torch.testing.assert_close(out, bottleneck @ prototypes.T)
    assert out.abs().max() <= 1 + 1e-6
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.equal(gain, torch.ones_like(gain))
    assert DINOHead(16, 10, 32, 8, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    with pytest.raises(ValueError, match="out_dim"):
        DINOHead(16, 0)


def test_encode_views_normalises_each_view_over_its_own_images():
    """One call per view: in training mode BatchNorm takes each view's statistics, not those of all V·N images."""
    network = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12))
    views = torch.randn(2, 4, 1, 3, 4) + torch.tensor([0.0, 5.0]).view(2, 1, 1, 1, 1)  # the views differ in mean
    reference = copy.deepcopy(network)
    expected = torch.stack([reference(view) for view in views])
    torch.testing.assert_close(encode_views(network, views), expected)
    torch.testing.assert_close(expected.mean(dim=1), torch.zeros(2, 12), atol=1e-5, rtol=0)
