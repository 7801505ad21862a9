"""WebDataset shards read by index: a 4-shard set the test writes, equality with the in-memory dataset,
exact mid-epoch resume with DataLoader workers, and the errors for bad shards."""

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("webdataset")
pytest.importorskip("braceexpand")

from contrastive_seq.data.image_text import load_image_text_file  # noqa: E402
from contrastive_seq.data.shard_writer import shards_from_folder, shards_from_table  # noqa: E402
from contrastive_seq.data.shards import ShardedImages, ShardedImageText, expand_shard_list  # noqa: E402
from contrastive_seq.losses.clip import CLIPLoss  # noqa: E402
from contrastive_seq.methods.clip import CLIP  # noqa: E402
from contrastive_seq.models.clip_towers import open_clip_towers  # noqa: E402
from contrastive_seq.sampling.paired import PairedSampler  # noqa: E402
from contrastive_seq.training import Trainer, TrainerConfig  # noqa: E402
from contrastive_seq.views.image_text import ImageTextViews, caption_tokens_of  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
NUM_PAIRS = 14
ROOT = Path(__file__).resolve().parents[1]


def write_pairs(folder: Path) -> Path:
    """14 small PNG / JPEG images of three colours with captions, in a CSV table; returns the table."""
    generator = torch.Generator().manual_seed(0)
    rows = ["image,caption,label"]
    for i in range(NUM_PAIRS):
        name = list(COLOURS)[i % 3]
        pixels = (torch.tensor(COLOURS[name]).view(1, 1, 3) + torch.randint(0, 30, (10, 10, 3), generator=generator))
        extension = "png" if i % 2 else "jpg"
        Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy()).save(folder / f"img{i}.{extension}")
        rows.append(f"img{i}.{extension},a {name} square number {i},{name}")
    table = folder / "pairs.csv"
    table.write_text("\n".join(rows) + "\n")
    return table


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    """(table, brace pattern of 4 shards, class names) written once for the module."""
    folder = tmp_path_factory.mktemp("pairs")
    table = write_pairs(folder)
    shards, class_names = shards_from_table(table, str(folder / "shards" / "pairs-%06d.tar"), samples_per_shard=4,
                                            label_key="label")
    assert [p.name for p in shards] == [f"pairs-00000{k}.tar" for k in range(4)]
    return table, str(folder / "shards" / "pairs-{000000..000003}.tar"), class_names


def test_shards_hold_the_table_and_read_by_index_like_the_in_memory_dataset(shard_set):
    table, pattern, class_names = shard_set
    memory = load_image_text_file(table, image_size=8)
    sharded = ShardedImageText(pattern, image_size=8, class_names=class_names)
    assert len(sharded) == len(memory) == NUM_PAIRS
    assert sharded.captions == memory.captions and sharded.class_names == memory.class_names == sorted(COLOURS)
    assert torch.equal(sharded.caption_image, memory.caption_image) and torch.equal(sharded.labels, memory.labels)
    index = torch.tensor([[13, 0, 5], [4, 4, 9]])
    assert torch.equal(sharded[index], memory[index])
    assert sharded[index].shape == (2, 3, 3, 8, 8)
    for sharded_part, memory_part in zip(sharded.split(0.3, seed=1), memory.split(0.3, seed=1)):
        by_image = [memory_part.captions[j] for j in memory_part.caption_image.argsort().tolist()]  # one caption each
        assert sharded_part.captions == by_image and torch.equal(sharded_part.labels, memory_part.labels)
        assert torch.equal(sharded_part[torch.arange(len(sharded_part))], memory_part[torch.arange(len(memory_part))])
    # the '::'-joined list and a list of patterns name the same shards
    shards = expand_shard_list(pattern)
    assert expand_shard_list("::".join(map(str, shards))) == expand_shard_list([str(s) for s in shards]) == shards


def test_images_with_labels_from_class_folders(tmp_path):
    for name, colour in COLOURS.items():
        (tmp_path / "root" / name).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (6, 6), colour).save(tmp_path / "root" / name / f"{k}.png")
    shards, classes = shards_from_folder(tmp_path / "root", str(tmp_path / "out" / "img-%03d.tar"), samples_per_shard=4)
    assert len(shards) == 2 and classes == sorted(COLOURS)
    images = ShardedImages(str(tmp_path / "out" / "img-{000..001}.tar"), image_size=4, class_names=classes)
    assert images.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.allclose(images[torch.tensor([2])][0, :, 0, 0] * 255, torch.tensor(COLOURS["green"]).float())


class Interrupted(Exception):
    """Stands for a run killed mid-epoch."""


def clip_trainer(dataset, output_dir, num_workers):
    torch.manual_seed(0)
    image, text = open_clip_towers(None, 16, {"image_size": 8, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16},
                                   {"context_length": 12, "width": 32, "heads": 2, "layers": 1})
    views = ImageTextViews(caption_tokens_of(dataset, text.tokenizer))  # read from the shard caches by batch
    config = TrainerConfig(max_steps=6, batch_size=4, lr=1e-3, checkpoint_every=3, output_dir=output_dir,
                           progress=False, device="cpu", num_workers=num_workers, seed=3)
    return Trainer(CLIP(image, text, CLIPLoss()), config, dataset, PairedSampler(dataset.caption_image, len(dataset)),
                   views)


def test_a_run_resumed_mid_epoch_with_workers_sees_the_batches_of_an_uninterrupted_one(shard_set, tmp_path):
    """14 pairs, batch 4: step 3 is mid-epoch. The interrupted run dies drawing step 4, after its step-3
    checkpoint; a new Trainer with 2 DataLoader workers resumes from it. Batches and final weights are equal."""
    _, pattern, class_names = shard_set
    dataset = ShardedImageText(pattern, image_size=8, class_names=class_names)
    seen = {}

    def record(trainer, name):
        views = trainer.batches.views

        def recording(data, pairs, generator):
            if name == "first" and len(seen.get(name, [])) == 3:  # the fourth batch: killed after the step-3 checkpoint
                seen[name].append(None)
                raise Interrupted
            batch = views(data, pairs, generator)
            seen.setdefault(name, []).append(batch)
            return batch
        trainer.batches.views = recording

    whole = clip_trainer(dataset, tmp_path / "whole", num_workers=0)
    record(whole, "whole")
    whole.fit()
    first = clip_trainer(dataset, tmp_path / "parts", num_workers=0)
    record(first, "first")
    with pytest.raises(Interrupted):
        first.fit()
    assert first.step == 3 and len(seen["first"]) == 4
    resumed = clip_trainer(dataset, tmp_path / "parts", num_workers=2)  # forked workers share its open files
    resumed.fit()
    assert resumed.step == whole.step == 6
    for step in range(3, 6):  # the workers' batches are the batches the whole run drew at these steps
        batch = resumed.batches[step]
        assert torch.equal(batch["image"], seen["whole"][step]["image"])
        assert torch.equal(batch["text"], seen["whole"][step]["text"])
    for a, b in zip(whole.method.state_dict().values(), resumed.method.state_dict().values()):
        assert torch.equal(a, b)


def test_a_shard_list_that_matches_no_file_is_refused_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"names 3 of 3 files .*first: .*pairs-000\.tar"):
        ShardedImageText(str(tmp_path / "pairs-{000..002}.tar"), image_size=8)


def test_a_truncated_tar_is_refused_naming_the_file(shard_set, tmp_path):
    _, pattern, _ = shard_set
    shard = expand_shard_list(pattern)[1]
    with tarfile.open(shard) as tar:
        boundary = tar.getmembers()[2].offset  # where the third member's header starts
    damaged = tmp_path / "damaged.tar"
    for cut in (shard.stat().st_size // 3, boundary):  # inside a member, and between two (a shorter valid-looking tar)
        damaged.write_bytes(shard.read_bytes()[:cut])
        with pytest.raises(ValueError, match=f"shard {damaged} is truncated"):
            ShardedImageText(str(damaged), image_size=8)


def write_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_sample_missing_its_image_or_caption_is_an_error_or_a_counted_skip(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(png, format="png")
    write_tar(tmp_path / "a.tar", {"s0.png": png.getvalue(), "s0.txt": b"ok", "s1.txt": b"no image",
                                   "s2.png": png.getvalue(), "s3.png": png.getvalue(), "s3.txt": b"fine"})
    with pytest.raises(ValueError, match=rf"shard {tmp_path / 'a.tar'}: sample s1 has no image"):
        ShardedImageText(str(tmp_path / "a.tar"), image_size=4)
    with pytest.warns(UserWarning, match="skipped 2 incomplete samples"):
        pairs = ShardedImageText(str(tmp_path / "a.tar"), image_size=4, on_missing="skip")
    assert pairs.captions == ["ok", "fine"] and pairs.keys == ["s0", "s3"]
    with pytest.warns(UserWarning, match="skipped 1 incomplete samples"):
        assert len(ShardedImages(str(tmp_path / "a.tar"), image_size=4, on_missing="skip")) == 3


def test_the_recipe_script_writes_shards_and_prints_their_pattern(shard_set, tmp_path, capsys):
    table, _, _ = shard_set
    spec = importlib.util.spec_from_file_location("make_shards", ROOT / "datasets" / "shards" / "make_shards.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--table", str(table), "--output", str(tmp_path / "p-%03d.tar"), "--samples-per-shard", "5",
                 "--label-key", "label"])
    pattern = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert pattern == str(tmp_path / "p-{000..002}.tar")
    assert json.loads((tmp_path / "classes.json").read_text()) == sorted(COLOURS)
    assert len(ShardedImageText(pattern, image_size=8)) == NUM_PAIRS


def test_the_shard_index_is_cached_and_rebuilt_when_a_shard_changes(shard_set, tmp_path, monkeypatch):
    """A second start reads every shard's cached index (no tar is scanned) and gives the same dataset;
    a rewritten shard (another size and time) is scanned again, the others are not."""
    from contrastive_seq.data import shards

    _, pattern, class_names = shard_set
    folder = tmp_path / "copy"
    folder.mkdir()
    for shard in expand_shard_list(pattern):
        (folder / shard.name).write_bytes(shard.read_bytes())
    copied = str(folder / "pairs-{000000..000003}.tar")
    scanned = []
    scan = shards._scan_shard
    monkeypatch.setattr(shards, "_scan_shard", lambda path: scanned.append(path.name) or scan(path))
    first = ShardedImageText(copied, image_size=8, class_names=class_names)
    assert len(scanned) == 4 and len(list(folder.glob("pairs-*.tar.index.npz"))) == 4
    again = ShardedImageText(copied, image_size=8, class_names=class_names)
    assert len(scanned) == 4  # every index from its cache
    assert again.captions == first.captions and again.keys == first.keys and torch.equal(again.labels, first.labels)
    everything = torch.arange(NUM_PAIRS)
    assert torch.equal(again[everything], first[everything])
    png = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(png, format="png")
    write_tar(folder / "pairs-000002.tar", {"new.png": png.getvalue(), "new.txt": b"a grey square", "new.cls": b"0"})
    changed = ShardedImageText(copied, image_size=8, class_names=class_names)
    assert scanned[4:] == ["pairs-000002.tar"]
    assert len(changed) == NUM_PAIRS - 4 + 1 and "a grey square" in changed.captions
    elsewhere = ShardedImageText(copied, image_size=8, class_names=class_names, index_dir=tmp_path / "index")
    assert len(list((tmp_path / "index").glob("pairs-*.index.npz"))) == 4 and elsewhere.keys == changed.keys


def test_clip_and_simclr_train_on_shards_from_a_config_with_local_weights(shard_set, tmp_path):
    """``contrastive-seq train`` on the 4 shards, each tower or backbone started from a weights file the test
    writes and locked: after training it still holds exactly the file's weights; with the file deleted, the
    run still embeds shards and exports."""
    import open_clip
    import torchvision
    from safetensors.torch import save_file

    from contrastive_seq.cli import main
    from contrastive_seq.models.clip_towers import open_clip_config

    _, pattern, class_names = shard_set
    configs = ROOT / "configs" / "own_data"
    quiet = ["train.max_steps=2", "train.batch_size=4", "train.warmup_steps=1", "train.num_workers=0",
             "train.progress=false", "train.checkpoint_every=1000", "data.test_fraction=0.3", "data.image_size=16"]
    vision = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}
    text = {"context_length": 24, "width": 32, "heads": 2, "layers": 1}
    towers = open_clip_config(None, 16, vision, text)
    clip_weights = open_clip.CustomTextCLIP(towers["embed_dim"], towers["vision_cfg"], towers["text_cfg"]).state_dict()
    save_file(clip_weights, tmp_path / "clip.safetensors")
    run = tmp_path / "clip_run"
    assert main(["train", str(configs / "clip_image_text_shards.yaml"), f"data.shards={pattern}",
                 f"data.class_names={class_names}", "encoder.embed_dim=16", f"encoder.vision={vision}",
                 f"encoder.text={text}", f"encoder.pretrained={tmp_path / 'clip.safetensors'}",
                 "encoder.lock_image=true", *quiet, f"train.output_dir={run}"]) == 0
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    visual = {key: value for key, value in clip_weights.items() if key.startswith("visual.")}
    for key, value in visual.items():
        assert torch.equal(trained[key.replace("visual.", "image_tower.backbone.", 1)], value), key
    (tmp_path / "clip.safetensors").unlink()  # initial weights only: the trained run embeds without them
    assert main(["embed", str(run), pattern, "-o", str(tmp_path / "z.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "z.npy").shape == (NUM_PAIRS, 16)

    resnet = torchvision.models.resnet18().state_dict()
    save_file(resnet, tmp_path / "resnet18.safetensors")
    run = tmp_path / "simclr_run"
    assert main(["train", str(configs / "simclr_image_shards.yaml"), f"data.shards={pattern}",
                 f"encoder.weights_file={tmp_path / 'resnet18.safetensors'}", "encoder.freeze=true",
                 "evaluation.name=none", *quiet, f"train.output_dir={run}"]) == 0
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    frozen = [key for key, value in torchvision.models.resnet18().named_parameters() if not key.startswith("fc.")]
    for key in frozen:
        assert torch.equal(trained[f"encoder.network.{key}"], resnet[key]), key
    (tmp_path / "resnet18.safetensors").unlink()
    assert main(["export", str(run), "-o", str(tmp_path / "resnet.pt")]) == 0
