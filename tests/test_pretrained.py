"""Pretrained weights from local files the tests write: open_clip checkpoints (.safetensors, .pt wrapped by a
training run, .bin), torchvision and timm weights; locking; pickles that run code and weights that do not fit."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from contrastive_seq.models.backbones import image_backbone
from contrastive_seq.models.clip_towers import open_clip_towers
from contrastive_seq.models.pretrained import read_weights

TINY_VISION = {"image_size": 8, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16}
TINY_TEXT = {"context_length": 8, "width": 32, "heads": 2, "layers": 1}


@pytest.fixture(scope="module")
def released_clip():
    """An open_clip ``CLIP`` (the layout of released checkpoints) with random weights."""
    import open_clip

    torch.manual_seed(1)
    return open_clip.CLIP(16, open_clip.CLIPVisionCfg(**TINY_VISION), open_clip.CLIPTextCfg(**TINY_TEXT)).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_open_clip_checkpoint_gives_the_released_models_embeddings(released_clip, tmp_path, suffix):
    state = {name: tensor.clone().contiguous() for name, tensor in released_clip.state_dict().items()}
    path = tmp_path / f"clip{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    elif suffix == ".pt":  # as a DDP training run saves it
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    image, text = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT, pretrained=path, lock_text=True)
    image.eval()
    pictures = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    tokens = text.tokenizer(["a red square", "a cat", "blue"])
    with torch.no_grad():
        assert torch.allclose(text(tokens), released_clip.encode_text(tokens), atol=1e-6)
        expected = released_clip.encode_image((pictures - image.mean) / image.std)
        assert torch.allclose(image(pictures), expected, atol=1e-6)
    assert all(p.requires_grad for p in image.parameters()) and not any(p.requires_grad for p in text.parameters())


def test_weights_of_another_shape_are_refused_naming_the_file_and_the_first_parameter(released_clip, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(released_clip.state_dict(), path)
    wider_text = {**TINY_TEXT, "width": 48}
    with pytest.raises(ValueError, match=rf"weights file {path} does not fit CustomTextCLIP: the first mismatched "
                                         r"parameter is 'text.positional_embedding', \(8, 32\) in the file and \(8, 48\)"):
        open_clip_towers(None, 16, TINY_VISION, wider_text, pretrained=path)
    with pytest.raises(ValueError, match=rf"weights file {path} has 'positional_embedding', which ResNet does not have \(38 such entries\)"):
        image_backbone("resnet18", weights=path)
    with pytest.raises(FileNotFoundError, match="weights file openai does not exist"):
        open_clip_towers(None, 16, TINY_VISION, TINY_TEXT, pretrained="openai")


class RunsCode:
    """A pickle whose loading would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.bin"
    torch.save({"state_dict": {"weight": torch.ones(2)}, "payload": RunsCode(marker)}, path)
    with pytest.raises(ValueError, match=rf"weights file {path} could not be read: .*weights-only loading refuses"):
        read_weights(path)
    assert not marker.exists()


def test_torchvision_weights_from_a_local_file_with_or_without_the_classifier(tmp_path):
    torch.manual_seed(2)
    network = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), path)
    headless = tmp_path / "resnet18-headless.safetensors"
    save_file({k: v for k, v in network.state_dict().items() if not k.startswith("fc.")}, headless)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    network.fc = nn.Identity()
    with torch.no_grad():
        expected = network(images)
        for weights in (path, headless):
            backbone = image_backbone("resnet18", weights=weights).eval()
            assert torch.allclose(backbone(images), expected, atol=1e-5)


def test_timm_backbone_by_name_with_local_weights_and_an_adapted_grey_stem(tmp_path):
    import timm

    torch.manual_seed(3)
    network = timm.create_model("test_resnet", pretrained=False).eval()
    path = tmp_path / "test_resnet.safetensors"
    save_file(network.state_dict(), path)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    network.reset_classifier(0)
    backbone = image_backbone("timm:test_resnet", weights=path).eval()
    with torch.no_grad():
        assert torch.allclose(backbone(images), network(images), atol=1e-5)
    grey = image_backbone("timm:test_resnet", in_channels=1, weights=path).eval()
    stem = grey.network.conv1[0].weight if isinstance(grey.network.conv1, nn.Sequential) else grey.network.conv1.weight
    assert stem.shape[1] == 1 and grey(images[:, :1]).shape == (2, backbone.output_dim)
    with pytest.raises(ValueError, match="timm:no_such_net is not a timm model"):
        image_backbone("timm:no_such_net")
