"""Sharded pairs keep their index and caption tokens on disk: rows read from ``.npz`` files equal numpy's,
the cached shard tokens equal the in-memory table (whole set, a split, skipped samples), are tokenised
once per tokenizer, and what a dataset, its sampler and its tokens hold does not grow with the set."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertTokenizerFast

from contrastive_seq.data import npz_rows
from contrastive_seq.data.npz_rows import NpzColumn, NpzRagged, file_version, ragged_arrays, read_at
from contrastive_seq.data.shards import ShardedImageText
from contrastive_seq.models.clip_towers import HFTokenizer, OpenCLIPTokenizer
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.views.image_text import caption_tokens_of, tokenize_captions

WORDS = ["red", "green", "blue", "small", "large", "square", "circle", "bright", "dark", "photo"]


def write_shards(folder, per_shard, shards=4, missing_image=()):
    """``shards`` tars of ``per_shard`` pairs (one 4x4 PNG reused, captions of varying length); the
    samples numbered in ``missing_image`` have a caption and no image. Returns the brace pattern."""
    folder.mkdir(parents=True)
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(png, format="png")
    for shard in range(shards):
        with tarfile.open(folder / f"p-{shard}.tar", "w") as tar:
            for k in range(per_shard):
                i = shard * per_shard + k
                caption = f"a {' '.join(WORDS[(i * j) % 10] for j in range(1 + i % 7))} picture {i}".encode()
                members = {f"{i:06d}.txt": caption} if i in missing_image else {f"{i:06d}.png": png.getvalue(),
                                                                                f"{i:06d}.txt": caption}
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(folder / f"p-{{0..{shards - 1}}}.tar")


def test_npz_columns_read_the_rows_numpy_reads_and_refuse_what_they_cannot(tmp_path):
    generator = np.random.default_rng(0)
    arrays = {"table": generator.integers(-9, 9, (7, 3)), "flags": generator.random(7) > 0.5,
              "scalars": generator.random(7).astype(np.float32),
              **ragged_arrays("texts", [b"", "d\u00e9j\u00e0".encode(), b"vu"], np.uint8)}
    np.savez(tmp_path / "a.npz", **arrays)
    for name in ("table", "flags", "scalars"):
        column = NpzColumn(tmp_path / "a.npz", name)
        assert column.shape == arrays[name].shape and column.dtype == arrays[name].dtype
        assert np.array_equal(column.span(2, 5), arrays[name][2:5])
        assert np.array_equal(column.take(np.array([6, 0, 6, 3])), arrays[name][[6, 0, 6, 3]])
        copy = pickle.loads(pickle.dumps(column))  # a spawned worker's copy opens its own file
        assert np.array_equal(copy.take(np.array([1])), arrays[name][[1]])
    texts = NpzRagged(tmp_path / "a.npz", "texts")
    assert [texts.text(i) for i in range(3)] == ["", "d\u00e9j\u00e0", "vu"] and len(texts) == 3
    with pytest.raises(IndexError, match="rows from 2 to 7 outside 'table'"):
        NpzColumn(tmp_path / "a.npz", "table").take(np.array([2, 7]))
    np.savez_compressed(tmp_path / "b.npz", table=arrays["table"])
    with pytest.raises(ValueError, match=rf"{tmp_path / 'b.npz'}: array 'table' is compressed"):
        NpzColumn(tmp_path / "b.npz", "table")
    column = NpzColumn(tmp_path / "a.npz", "table")
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npz").read_bytes()[:200])  # cut while in use
    with pytest.raises(ValueError, match="ends early"):
        column.span(0, 7)


def test_at_most_max_open_files_stay_open_and_reads_stay_right(tmp_path, monkeypatch):
    """Three files read in turn with room for two open: each read still gives its file's bytes, the
    least recently read file is the one closed, and no more than two descriptors are ever held. A file
    replaced after its layout was read (a rebuilt cache, a rewritten shard) is refused, naming it."""
    monkeypatch.setattr(npz_rows, "MAX_OPEN_FILES", 2)
    monkeypatch.setattr(npz_rows, "_open_files", type(npz_rows._open_files)())
    files, versions = [], []
    for k in range(3):
        files.append(tmp_path / f"f{k}")
        files[-1].write_bytes(bytes([k]) * 10 + b"end")
        versions.append(file_version(files[-1].stat()))
    for k in [0, 1, 2, 0, 2, 1, 1, 0]:
        assert read_at(files[k], versions[k], 4, 9) == bytes([k]) + b"end"
        assert len(npz_rows._open_files) <= 2
    assert [path for path, _ in npz_rows._open_files] == [files[1], files[0]]  # 2 was read least recently
    (tmp_path / "new").write_bytes(b"x" * 13)
    os.replace(tmp_path / "new", files[0])  # as a cache is rewritten: another file under the same name
    assert read_at(files[0], versions[0], 4, 9) == b"\x00end"  # still open: the version it was indexed as
    read_at(files[2], versions[2], 1, 0)
    read_at(files[1], versions[1], 1, 0)  # files[0] closed
    with pytest.raises(ValueError, match=rf"{files[0]} changed after it was indexed"):
        read_at(files[0], versions[0], 4, 9)
    assert read_at(files[0], file_version(files[0].stat()), 4, 9) == b"xxxx"
    for descriptor in npz_rows._open_files.values():
        os.close(descriptor)


def test_cached_shard_tokens_equal_the_in_memory_table_and_are_tokenised_once(tmp_path, monkeypatch):
    pattern = write_shards(tmp_path / "shards", per_shard=9, missing_image={4, 30})
    with pytest.warns(UserWarning, match="skipped 2 incomplete samples"):
        data = ShardedImageText(pattern, image_size=4, on_missing="skip")
    tokenizer = OpenCLIPTokenizer(context_length=8)
    calls = []
    encode = OpenCLIPTokenizer.encode
    monkeypatch.setattr(OpenCLIPTokenizer, "encode", lambda self, texts: calls.append(len(texts)) or encode(self, texts))
    with pytest.warns(UserWarning) as cached:
        tokens = caption_tokens_of(data, tokenizer)
    assert calls == [9, 9, 9, 9]  # each shard's captions once, the skipped ones' included
    with pytest.warns(UserWarning) as in_memory:
        table = tokenize_captions(data.captions, tokenizer)
    assert str(cached[0].message) == str(in_memory[0].message)  # "N of 34 captions are longer ... (first: ...)"
    assert tokens.shape == table.shape == (34, 8)
    rows = torch.tensor([33, 0, 4, 4, 17, 29])
    assert torch.equal(tokens[rows], table[rows]) and torch.equal(tokens[:], table[:])
    calls.clear()
    for part in data.split(0.3, seed=2):
        with pytest.warns(UserWarning):
            part_tokens = caption_tokens_of(part, tokenizer)
            part_table = tokenize_captions(part.captions, tokenizer)
        assert torch.equal(part_tokens[:], part_table[:])
    assert calls == [len(part.captions) for part in data.split(0.3, seed=2)]  # only the in-memory tables
    with pytest.raises(ValueError, match="captions are longer than the context length 8 tokens.*shorten them"):
        caption_tokens_of(data, tokenizer, long_captions="error")
    wide = caption_tokens_of(data, OpenCLIPTokenizer(context_length=64))  # another tokenizer: its own caches
    assert len(list((tmp_path / "shards").glob("p-*.tar.tokens-*.npz"))) == 8
    assert torch.equal(wide[rows], tokenize_captions(data.captions, OpenCLIPTokenizer(context_length=64))[rows])


def test_tokenizer_fingerprints_change_with_what_changes_the_ids(tmp_path):
    assert OpenCLIPTokenizer(16).fingerprint() == OpenCLIPTokenizer(16).fingerprint()
    assert OpenCLIPTokenizer(16).fingerprint() != OpenCLIPTokenizer(17).fingerprint()
    fingerprints = []
    for words in (["red", "green"], ["red", "blue"]):
        vocab = tmp_path / f"{words[1]}.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]) + "\n")
        fingerprints += [HFTokenizer(BertTokenizerFast(str(vocab)), n).fingerprint() for n in (8, 8, 9)]
    assert fingerprints[0] == fingerprints[1] and len(set(fingerprints)) == 4


def held_by_a_worker(pattern, tokenizer):
    """Bytes a spawned DataLoader worker receives: the dataset, its sampler and its caption tokens, pickled."""
    data = ShardedImageText(pattern, image_size=4)
    return len(pickle.dumps((data, PairedSampler(data.caption_image, len(data)), caption_tokens_of(data, tokenizer))))


def test_what_a_sharded_set_holds_does_not_grow_with_its_size(tmp_path):
    """4 shards of 10 pairs and 4 shards of 1,000 pairs in folders of names of one length: the objects a
    run holds for them (pickled, numpy arrays included) differ by a few bytes of wider integers (file
    offsets, counts), where one byte more per pair would be 3,960 bytes."""
    tokenizer = OpenCLIPTokenizer(context_length=16)
    small = held_by_a_worker(write_shards(tmp_path / "s00010", per_shard=10), tokenizer)
    large = held_by_a_worker(write_shards(tmp_path / "s01000", per_shard=1000), tokenizer)
    assert abs(large - small) < 100


def test_caches_that_cannot_be_written_beside_the_shards_go_to_the_temporary_folder(tmp_path, monkeypatch):
    """A shard folder that cannot be written (a read-only mount): one warning naming it, the index and
    the tokens cached in a folder of the system's temporary directory and read from there next time."""
    from contrastive_seq.data import shards

    pattern = write_shards(tmp_path / "shards", per_shard=3, shards=2)
    monkeypatch.setattr(shards.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    write = shards.write_atomically

    def read_only_shard_folder(path, writer):
        if path.parent == tmp_path / "shards":
            raise PermissionError(13, "Permission denied")
        return write(path, writer)

    monkeypatch.setattr(shards, "write_atomically", read_only_shard_folder)
    with pytest.warns(UserWarning, match=rf"shard indexes cannot be cached in {tmp_path / 'shards'} \(Permission denied\)"):
        data = ShardedImageText(pattern, image_size=4)
        tokens = caption_tokens_of(data, OpenCLIPTokenizer(context_length=32))
    cached = sorted(path.name.split(".")[-2] for path in (tmp_path / "tmp" / "contrastive_seq-shard-indexes").iterdir())
    assert len(cached) == 4 and cached.count("index") == 2  # two indexes, two token files
    assert not list((tmp_path / "shards").glob("*.npz"))
    scanned = []
    monkeypatch.setattr(shards, "_scan_shard", lambda path: scanned.append(path))
    again = ShardedImageText(pattern, image_size=4)
    assert not scanned and again.captions == data.captions
    assert torch.equal(caption_tokens_of(again, OpenCLIPTokenizer(context_length=32))[:], tokens[:])
