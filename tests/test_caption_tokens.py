"""The packed caption-token table against a padded table built by a loop, and both tokenizers against
the padded tables their own libraries make (open_clip's ``SimpleTokenizer``, a Hugging Face tokenizer)."""

import numpy as np
import open_clip
import pytest
import torch
from transformers import BertTokenizerFast

import contrastive_seq.data.caption_tokens as caption_tokens
from contrastive_seq.data.caption_tokens import CaptionTokens
from contrastive_seq.models.clip_towers import HFTokenizer, OpenCLIPTokenizer
from contrastive_seq.views.image_text import tokenize_captions

CAPTIONS = [
    "a photo of a cat",
    "",
    "a very long caption about a small grey cat that sleeps on a warm red mat all day",
    "dog",
    "two dogs play in the park",
    "a cat and a dog and a cat and a dog",
]


def padded_by_loop(ids, context_length, pad):
    table = torch.full((len(ids), context_length), pad, dtype=torch.long)
    for i, row in enumerate(ids):
        for j, token in enumerate(row):
            table[i, j] = token
    return table


def random_ids(generator, m, context_length, vocabulary):
    lengths = torch.randint(0, context_length + 1, (m,), generator=generator).tolist()
    return [torch.randint(0, vocabulary, (n,), generator=generator).tolist() for n in lengths]


@pytest.mark.parametrize("vocabulary, dtype", [(49_408, np.uint16), (250_002, np.int32)])
def test_rows_equal_a_padded_table_built_by_a_loop(vocabulary, dtype):
    generator = torch.Generator().manual_seed(0)
    ids = random_ids(generator, 50, 9, vocabulary)
    tokens = CaptionTokens.from_ids(ids, context_length=9, pad_token_id=7)
    expected = padded_by_loop(ids, 9, 7)
    assert tokens.ids.dtype == dtype and tokens.shape == (50, 9) and len(tokens) == 50
    rows = torch.randint(-50, 50, (200,), generator=generator)
    assert torch.equal(tokens[rows], expected[rows])
    assert torch.equal(tokens[3:41:4], expected[3:41:4]) and torch.equal(tokens[:], expected)
    assert tokens[torch.zeros(0, dtype=torch.long)].shape == (0, 9)
    assert tokens.nbytes == tokens.ids.itemsize * sum(map(len, ids)) + 8 * 50


def test_concatenated_parts_equal_one_table():
    generator = torch.Generator().manual_seed(1)
    parts = [random_ids(generator, m, 6, 1000) for m in (4, 0, 7, 1)]
    joined = CaptionTokens.concatenate([CaptionTokens.from_ids(p, 6, 0) for p in parts])
    assert torch.equal(joined[:], padded_by_loop([row for p in parts for row in p], 6, 0))


def test_bad_tables_and_rows_are_refused():
    with pytest.raises(ValueError, match="more than context_length=2"):
        CaptionTokens.from_ids([[1, 2, 3]], context_length=2, pad_token_id=0)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 2\*\*31\)"):
        CaptionTokens.from_ids([[-1]], context_length=2, pad_token_id=0)
    with pytest.raises(ValueError, match="share context_length"):
        CaptionTokens.concatenate([CaptionTokens.from_ids([[1]], 2, 0), CaptionTokens.from_ids([[1]], 3, 0)])
    with pytest.raises(IndexError, match=r"rows must lie in \[-2, 2\), got 0 to 2"):
        CaptionTokens.from_ids([[1], [2]], 2, 0)[torch.tensor([0, 2])]


@pytest.mark.parametrize("context_length", [5, 12, 77])
def test_open_clip_tokenizer_equals_open_clips_own_table(context_length):
    ours = OpenCLIPTokenizer(context_length)
    theirs = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    assert torch.equal(ours(CAPTIONS), theirs(CAPTIONS))
    ids, lengths = ours.encode(CAPTIONS)
    assert lengths == [len(theirs.encode(text)) + 2 for text in CAPTIONS]
    assert all(len(row) == min(n, context_length) for row, n in zip(ids, lengths))


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory):
    words = sorted({word for caption in CAPTIONS for word in caption.split()} - {"grey"})  # "grey" is unknown
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(str(vocab))


@pytest.mark.parametrize("context_length", [4, 10, 32])
def test_hf_tokenizer_equals_the_libraries_padded_truncated_table(bert_tokenizer, context_length):
    ours = HFTokenizer(bert_tokenizer, context_length)
    theirs = bert_tokenizer(CAPTIONS, padding="max_length", truncation=True, max_length=context_length,
                            return_tensors="pt")["input_ids"]
    assert torch.equal(ours(CAPTIONS), theirs)
    assert ours.encode(CAPTIONS)[1] == [len(row) for row in bert_tokenizer(CAPTIONS)["input_ids"]]


def test_tokenize_captions_in_chunks_equals_one_call_and_counts_long_captions_across_chunks(monkeypatch):
    monkeypatch.setattr(caption_tokens, "TOKENIZE_CHUNK", 2)
    tokenizer = OpenCLIPTokenizer(context_length=7)
    captions = CAPTIONS * 3
    long = sum(len(open_clip.tokenizer.SimpleTokenizer().encode(text)) + 2 > 7 for text in captions)
    assert long == 9  # captions 2, 4 and 5 of each copy
    with pytest.warns(UserWarning, match=rf"{long} of 18 captions are longer than the context length 7 .*first: caption 2,"):
        tokens = tokenize_captions(captions, tokenizer)
    assert isinstance(tokens, CaptionTokens) and torch.equal(tokens[:], tokenizer(captions))
    with pytest.raises(ValueError, match="captions is empty"):
        tokenize_captions([], tokenizer)
