"""CLIP towers, tokenisation checks, locking, and a few Trainer steps with decreasing loss on tiny data."""

import json

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from contrastive_seq.data.image_text import caption_classes
from contrastive_seq.losses.clip import CLIPLoss
from contrastive_seq.methods.clip import CLIP
from contrastive_seq.models.clip_towers import OpenCLIPTokenizer, hf_text_tower, open_clip_towers
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views.image_text import ImageTextViews, tokenize_captions

TINY_VISION = {"image_size": 8, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16}
TINY_TEXT = {"context_length": 8, "width": 32, "heads": 2, "layers": 1}
WORDS = ["red", "green", "blue", "yellow", "a", "square", "photo", "of"]


@pytest.fixture(scope="module")
def bert_directory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)
    return folder


def add_tokenizer(folder):
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(folder)


def colour_data(n_per_class=4):
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    labels = torch.arange(4).repeat_interleave(n_per_class)
    noise = torch.rand(len(labels), 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    images = (colours[labels].view(-1, 3, 1, 1) * 0.7 + noise).clamp(0, 1)
    return caption_classes(images, labels, ["red", "green", "blue", "yellow"], ["a {} square", "photo of {}"])


def test_text_directory_without_tokenizer_is_refused_and_with_one_it_locks(bert_directory):
    with pytest.raises(ValueError, match=f"{bert_directory}.* has no tokenizer"):
        hf_text_tower(bert_directory, embed_dim=8)
    add_tokenizer(bert_directory)
    tower = hf_text_tower(bert_directory, embed_dim=8, context_length=6, lock=True)
    tokens = tower.tokenizer(["a red square", "green"])
    assert tokens.shape == (2, 6) and tokens[1, 3:].eq(tower.tokenizer.pad_token_id).all()
    tower.train()
    assert not tower.backbone.training and tower.projection.training
    tower(tokens).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in tower.backbone.parameters())
    assert tower.projection.weight.grad is not None


def test_long_captions_warn_and_truncate_or_fail_naming_the_caption():
    tokenizer = OpenCLIPTokenizer(context_length=5)
    captions = ["a cat", "a very long caption about a cat on a mat"]
    with pytest.warns(UserWarning, match=r"1 of 2 captions are longer than the context length 5 .*caption 1"):
        tokens = tokenize_captions(captions, tokenizer, "warn")
    assert tokens.shape == (2, 5) and int(tokens[1, -1]) == tokenizer._tokenizer.eot_token_id
    with pytest.raises(ValueError, match="caption 1, 12 tokens"):
        tokenize_captions(captions, tokenizer, "error")


def test_locked_open_clip_image_tower_gets_no_gradient():
    image, text = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT, lock_image=True)
    method = CLIP(image, text, CLIPLoss())
    batch = {"image": torch.rand(4, 3, 8, 8), "text": text.tokenizer(["a", "b", "c", "d"])}
    method.training_step(batch).loss.backward()
    assert all(p.grad is None for p in image.parameters())
    assert any(p.grad is not None for p in text.parameters())


def test_towers_with_different_dimensions_are_refused():
    image, _ = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT)
    _, text = open_clip_towers(None, 8, TINY_VISION, TINY_TEXT)
    with pytest.raises(ValueError, match="share their output dimension, got 16 and 8"):
        CLIP(image, text, CLIPLoss())


def test_a_few_trainer_steps_decrease_the_loss(tmp_path, bert_directory):
    torch.manual_seed(0)
    data = colour_data()
    add_tokenizer(bert_directory)
    image, _ = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT)
    text = hf_text_tower(bert_directory, embed_dim=16, context_length=6, lock=False)  # small vocabulary: fast steps
    method = CLIP(image, text, CLIPLoss())
    views = ImageTextViews(tokenize_captions(data.captions, text.tokenizer))
    config = TrainerConfig(max_steps=30, batch_size=8, lr=3e-3, log_every=1, checkpoint_every=None,
                           output_dir=tmp_path, progress=False, device="cpu")
    Trainer(method, config, data, PairedSampler(data.caption_image, len(data)), views).fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
