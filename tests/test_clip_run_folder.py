"""A CLIP run with a Hugging Face text tower embeds, exports and evaluates from its folder alone: the model
directory it was trained from may be gone (the run keeps the model's config and tokenizer, the checkpoint its weights)."""

import json
import shutil

import numpy as np
import pytest
import torch
from test_own_data import CONFIGS, QUIET, write_pairs_tsv
from transformers import BertConfig, BertModel, BertTokenizer

from contrastive_seq.cli import main
from contrastive_seq.export import encoder_from_run, load_encoder

WORDS = ["a", "bright", "dark", "square", "number"]
CAPTIONS = ["a bright square", "a dark square number 3", "dark"]


def write_bert_directory(folder):
    """A one-layer BERT with a seven-word vocabulary, saved as transformers saves a model, with its tokenizer."""
    folder.mkdir()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)


def embed(*args) -> int:
    return main(["embed", *map(str, args), "--no-progress"])


@pytest.fixture
def lit_run(tmp_path):
    """A 2-step LiT run (locked BERT text tower from ``bert/``) on a 12-pair TSV, and a new 8-pair table ``new``."""
    table, _ = write_pairs_tsv(tmp_path / "pairs", per_class=6, seed=0)
    write_pairs_tsv(tmp_path / "new", per_class=4, seed=1)
    write_bert_directory(tmp_path / "bert")
    run = tmp_path / "run"
    overrides = [f"data.path={table}", "encoder.embed_dim=8",
                 "encoder.vision={image_size: 32, layers: [1, 1, 1, 1], width: 16}",
                 f"encoder.text_directory={tmp_path / 'bert'}", "encoder.lock_text=true", "encoder.context_length=12",
                 "train.max_steps=2", "train.batch_size=8", "train.warmup_steps=1", "train.eval_every=1000", *QUIET,
                 f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "clip_image_text.yaml"), *overrides]) == 0
    return run


def test_lit_run_embeds_exports_and_evaluates_after_its_text_model_directory_is_gone(lit_run, tmp_path, capsys):
    run, new = lit_run, tmp_path / "new" / "pairs.tsv"
    kept = sorted(path.name for path in (run / "text_tower").iterdir())
    assert "config.json" in kept and "vocab.txt" in kept and "tokenizer_config.json" in kept
    assert not any(name.endswith((".safetensors", ".bin")) for name in kept)  # the weights are in the checkpoint
    assert embed(run, new, "-o", tmp_path / "before.npy") == 0
    text_before = encoder_from_run(run).embed(CAPTIONS, batch_size=2)  # two batches: the second one caption
    assert main(["export", str(run), "-o", str(tmp_path / "before.pt")]) == 0
    trained_row = json.loads((run / "results.json").read_text())["results"]["clip (trained)"]

    shutil.rmtree(tmp_path / "bert")  # the model directory is gone (or the run folder moved to another machine)
    assert embed(run, new, "-o", tmp_path / "after.npy") == 0
    assert main(["export", str(run), "-o", str(tmp_path / "after.pt")]) == 0
    assert embed(tmp_path / "before.pt", new, "-o", tmp_path / "exported_before.npy") == 0
    assert embed(tmp_path / "after.pt", new, "-o", tmp_path / "exported_after.npy") == 0
    before = np.load(tmp_path / "before.npy")
    assert before.shape == (8, 8) and np.isfinite(before).all()
    for name in ("after", "exported_before", "exported_after"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), before)
    assert text_before.shape == (3, 8) and np.isfinite(text_before).all()
    for encoder in (encoder_from_run(run), load_encoder(tmp_path / "before.pt"), load_encoder(tmp_path / "after.pt")):
        np.testing.assert_array_equal(encoder.embed(CAPTIONS, batch_size=2), text_before)

    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert "model directory is gone; it is rebuilt from" in capsys.readouterr().out
    assert json.loads((run / "results.json").read_text())["results"]["clip (trained)"] == trained_row


def test_a_run_without_kept_text_files_uses_the_model_directory_while_it_exists_then_says_what_is_missing(
    lit_run, tmp_path, capsys
):
    run, new = lit_run, tmp_path / "new" / "pairs.tsv"
    assert embed(run, new, "-o", tmp_path / "kept.npy") == 0
    shutil.rmtree(run / "text_tower")  # as a run trained before runs kept these files
    assert embed(run, new, "-o", tmp_path / "directory.npy") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "directory.npy"), np.load(tmp_path / "kept.npy"))
    shutil.rmtree(tmp_path / "bert")
    capsys.readouterr()
    assert embed(run, new, "-o", tmp_path / "z.npy") == 2
    error = capsys.readouterr().err
    assert f"run {run}: the text tower cannot be rebuilt: encoder.text_directory {tmp_path / 'bert'} is gone" in error
    assert "encoder.text_directory=DIRECTORY" in error
