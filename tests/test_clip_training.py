"""CLIP towers, tokenisation checks, locking, the locked-feature cache, chunked (gradient-cache) steps against the whole batch, and a few Trainer steps."""

import copy
import json

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from contrastive_seq.config import ConfigError
from contrastive_seq.data.image_text import caption_classes
from contrastive_seq.experiments.clip import CLIPTowersConfig, build_towers
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
    assert tokens.shape == (2, 5) and int(tokens[:][1, -1]) == tokenizer._tokenizer.eot_token_id
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


def train_colour_pairs(output_dir, bert_directory, precision="fp32", steps=30):
    """30 Trainer steps of CLIP (open_clip image tower, small BERT text tower) on coloured squares.

    Returns the logged losses and the trained method; the same seed for every precision.
    """
    torch.manual_seed(0)
    data = colour_data()
    add_tokenizer(bert_directory)
    image, _ = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT)
    text = hf_text_tower(bert_directory, embed_dim=16, context_length=6, lock=False)  # small vocabulary: fast steps
    method = CLIP(image, text, CLIPLoss())
    views = ImageTextViews(tokenize_captions(data.captions, text.tokenizer))
    config = TrainerConfig(max_steps=steps, batch_size=8, lr=3e-3, log_every=1, checkpoint_every=None,
                           output_dir=output_dir, progress=False, device="cpu", precision=precision)
    Trainer(method, config, data, PairedSampler(data.caption_image, len(data)), views).fit()
    losses = [json.loads(line)["loss"] for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == steps
    return losses, method


def test_a_few_trainer_steps_decrease_the_loss(tmp_path, bert_directory):
    losses, _ = train_colour_pairs(tmp_path, bert_directory)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_bf16_autocast_trains_like_fp32_and_keeps_fp32_weights(tmp_path, bert_directory):
    """precision='bf16' autocasts the towers on the CPU; the loss starts where fp32's does and falls as far."""
    fp32, _ = train_colour_pairs(tmp_path / "fp32", bert_directory)
    bf16, method = train_colour_pairs(tmp_path / "bf16", bert_directory, precision="bf16")
    assert bf16[0] == pytest.approx(fp32[0], rel=2e-2)  # bf16 keeps 8 bits of mantissa
    assert bf16[0] != fp32[0]  # autocast did run in bf16
    assert sum(bf16[-5:]) / 5 < 0.7 * sum(bf16[:5]) / 5
    assert all(parameter.dtype == torch.float32 for parameter in method.parameters())
    assert float(method.loss.core.temperature.scale().detach()) <= 100


def parameter_grads(method):
    return {name: p.grad.clone() for name, p in method.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lit", [False, True])
def test_chunked_step_gives_the_gradients_of_the_whole_batch(lit, bert_directory):
    """CLIP(chunk_size=3) on 10 pairs: every parameter gradient (temperature included) equals the plain batch's."""
    torch.manual_seed(0)
    dim = 8  # below the BERT's width 16: the locked text tower gets a trained projection
    image, text = open_clip_towers(None, dim, TINY_VISION, TINY_TEXT)
    if lit:
        add_tokenizer(bert_directory)
        text = hf_text_tower(bert_directory, embed_dim=dim, context_length=6, lock=True).cache_features()
    words = ["red square", "a green photo", "blue", "yellow square of", "photo"] * 2
    images = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    batch = {"image": images, "text": text.tokenizer(words)}
    plain = CLIP(image, text, CLIPLoss())
    chunked = CLIP(copy.deepcopy(image), copy.deepcopy(text), copy.deepcopy(plain.loss), chunk_size=3)
    expected = plain.training_step(batch)
    expected.loss.backward()
    output = chunked.training_step(batch)
    output.loss.backward()
    torch.testing.assert_close(output.loss, expected.loss, rtol=1e-5, atol=1e-5)
    reference, cached = parameter_grads(plain), parameter_grads(chunked)
    assert cached.keys() == reference.keys()
    for part in ("image_tower.backbone.", "text_tower.projection." if lit else "text_tower.backbone.", "loss."):
        assert any(name.startswith(part) for name in reference), part
    for name, grad in reference.items():
        torch.testing.assert_close(cached[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_locked_feature_cache_runs_each_distinct_row_once(bert_directory):
    add_tokenizer(bert_directory)
    tower = hf_text_tower(bert_directory, embed_dim=8, context_length=6, lock=True)
    tokens = tower.tokenizer(["red", "a blue photo", "red", "green square"])
    expected = tower.features(tokens)
    calls = []
    tower.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    tower.cache_features()
    torch.testing.assert_close(tower.features(tokens), expected)
    torch.testing.assert_close(tower.features(tokens[[3, 0]]), expected[[3, 0]])
    assert calls == [3]  # three distinct captions, computed once
    tower.load_state_dict(tower.state_dict())  # new weights may change the features: the cache is emptied
    tower.features(tokens[:1])
    assert calls == [3, 1]
    image, _ = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT)
    with pytest.raises(ValueError, match="cache_features needs a locked tower"):
        image.cache_features()


def test_config_caches_only_locked_towers():
    config = CLIPTowersConfig(embed_dim=16, vision=TINY_VISION, text=TINY_TEXT, context_length=8,
                              cache_locked_features=True)
    with pytest.raises(ConfigError, match="cache_locked_features needs encoder.lock_image or encoder.lock_text"):
        build_towers(config)
    config.lock_text = True
    image, text = build_towers(config)
    assert text._feature_cache == {} and image._feature_cache is None
