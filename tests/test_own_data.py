"""One test per domain: a user's own small files (written here) → ``contrastive-seq train`` → ``embed`` → scikit-learn.

Each runs the commands the domain's docs page shows ("Your own data"), with a
handful of steps: the point is that the files are read, trained on, saved and
embedded, not the quality of the embedding.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from contrastive_seq.cli import error_line, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "own_data"
QUIET = ["train.progress=false", "train.log_every=1", "train.checkpoint_every=1000"]


def write_recording(path: Path, trials: int, seed: int) -> None:
    """An .npz recording: ``spikes (T, 12)`` driven by ``position (T,)``, ``trial (T,)`` ids of 100-bin trials."""
    rng = np.random.default_rng(seed)
    position = np.tile(np.linspace(0.0, 1.0, 100), trials)
    centres = np.linspace(0.0, 1.0, 12)
    rates = 4.0 * np.exp(-((position[:, None] - centres) ** 2) / 0.02)
    np.savez(path, spikes=rng.poisson(rates).astype(np.float32), position=position, trial=np.repeat(np.arange(trials), 100))


def test_own_recording_trains_embeds_and_decodes(tmp_path):
    write_recording(tmp_path / "rec.npz", trials=10, seed=0)
    write_recording(tmp_path / "new.npz", trials=3, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.path={tmp_path / 'rec.npz'}", "train.max_steps=5", "train.batch_size=64", *QUIET,
                 f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "cebra_recording.yaml"), *overrides]) == 0
    assert {"checkpoint.pt", "config.yaml", "results.json"} <= {p.name for p in run.iterdir()}
    assert main(["embed", str(run), str(tmp_path / "new.npz"), "-o", str(tmp_path / "z.npy"), "--no-progress"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (300, 3) and np.isfinite(z).all()
    position = np.load(tmp_path / "new.npz")["position"]
    assert Ridge().fit(z, position).score(z, position) > -1.0  # usable by scikit-learn as a (T, 3) design matrix


def test_own_recording_holds_out_whole_trials_and_samples_within_them(tmp_path):
    from contrastive_seq.experiments import build_experiment, load_experiment_config

    write_recording(tmp_path / "rec.npz", trials=10, seed=0)
    config = load_experiment_config(CONFIGS / "cebra_recording.yaml", [f"data.path={tmp_path / 'rec.npz'}",
                                                                       "data.test_fraction=0.23"])
    experiment = build_experiment(config)
    train, test = experiment.data.train, experiment.data.test
    assert (len(train), len(test)) == (800, 200)  # 770 moves to the nearest trial boundary
    assert set(train.segments.tolist()).isdisjoint(test.segments.tolist())
    assert experiment.sampler.segments is not None and experiment.sampler.segment_lengths == [100] * 8


def test_own_recording_without_labels_trains_and_saves(tmp_path, capsys):
    write_recording(tmp_path / "rec.npz", trials=4, seed=0)
    config = str(CONFIGS / "cebra_recording.yaml")
    common = [f"data.path={tmp_path / 'rec.npz'}", "data.continuous=[]", "train.max_steps=2", "train.batch_size=32",
              *QUIET]
    assert main(["train", config, *common, f"train.output_dir={tmp_path / 'a'}"]) == 2  # behaviour: continuous
    assert "method.behaviour='continuous' needs continuous labels" in capsys.readouterr().err
    assert main(["train", config, *common, "method.behaviour=none", f"train.output_dir={tmp_path / 'b'}"]) == 0
    assert "no evaluation" in capsys.readouterr().out and (tmp_path / "b" / "checkpoint.pt").is_file()


def write_png_folder(root: Path, per_class: int, seed: int) -> list[int]:
    """``root/<class>/<i>.png``: 16x16 RGB images, class ``dark`` or ``bright``; returns the labels in sorted path order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(["bright", "dark"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            level = 200 if name == "bright" else 40
            pixels = np.clip(rng.normal(level, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return [label for label in (0, 1) for _ in range(per_class)]


def test_own_image_folder_trains_embeds_and_classifies(tmp_path):
    write_png_folder(tmp_path / "pngs", per_class=10, seed=0)
    labels = write_png_folder(tmp_path / "new", per_class=6, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.path={tmp_path / 'pngs'}", "data.image_size=16", "encoder.widths=[8,16]",
                 "train.max_steps=3", "train.batch_size=8", "train.warmup_steps=1", "train.num_workers=0", *QUIET,
                 f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "simclr_image_folder.yaml"), *overrides]) == 0
    assert main(["embed", str(run), str(tmp_path / "new"), "-o", str(tmp_path / "z.npy"), "--no-progress"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape[0] == 12 and np.isfinite(z).all()
    assert LogisticRegression().fit(z, labels).score(z, labels) >= 0.5


def test_corrupt_png_is_one_line_naming_the_file(tmp_path, capsys):
    write_png_folder(tmp_path / "pngs", per_class=3, seed=0)
    (tmp_path / "pngs" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    status = main(["train", str(CONFIGS / "simclr_image_folder.yaml"), f"data.path={tmp_path / 'pngs'}",
                   f"train.output_dir={tmp_path / 'run'}"])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and "broken.png" in error and "Traceback" not in error


def write_wav_folder(root: Path, per_speaker: int, seed: int) -> list[int]:
    """``root/<speaker>/<i>.wav``: 0.25 s at 8 kHz, speaker ``low`` or ``high`` by pitch; speakers in sorted path order."""
    import soundfile

    rng = np.random.default_rng(seed)
    time = np.arange(2000) / 8000
    for speaker, pitch in (("high", 900.0), ("low", 150.0)):
        (root / speaker).mkdir(parents=True)
        for i in range(per_speaker):
            wave = 0.5 * np.sin(2 * np.pi * pitch * (1 + 0.05 * rng.standard_normal()) * time)
            soundfile.write(root / speaker / f"{i}.wav", wave + 0.01 * rng.standard_normal(time.size), 8000)
    return [label for label in (0, 1) for _ in range(per_speaker)]


def test_own_wav_folder_trains_embeds_and_classifies_speakers(tmp_path):
    write_wav_folder(tmp_path / "wavs", per_speaker=4, seed=0)
    speakers = write_wav_folder(tmp_path / "new", per_speaker=3, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.path={tmp_path / 'wavs'}", "views.crop_length=2545", "encoder.hidden_dim=16",
                 "method.context_dim=16", "method.num_steps=2", "method.num_negatives=8", "train.max_steps=3",
                 "train.batch_size=4", "train.warmup_steps=1", *QUIET, f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "cpc_audio_folder.yaml"), *overrides]) == 0
    assert main(["embed", str(run), str(tmp_path / "new"), "-o", str(tmp_path / "z.h5"), "--no-progress"]) == 0
    import h5py

    with h5py.File(tmp_path / "z.h5") as file:
        z = file["embedding"][()]
    assert z.shape == (6, 16) and np.isfinite(z).all()  # one row per file: its frames' mean
    assert LogisticRegression().fit(z, speakers).score(z, speakers) >= 0.5
    # every frame (c_t) of each file, concatenated in file order, with the frame count and name of each file
    assert main(["embed", str(run), str(tmp_path / "new"), "-o", str(tmp_path / "frames.h5"), "--frames",
                 "--no-progress"]) == 0
    with h5py.File(tmp_path / "frames.h5") as file:
        frames, lengths = file["embedding"][()], file["lengths"][()]
        files = [name.decode() for name in file["files"][()]]
    assert lengths.sum() == len(frames) and len(files) == 6 and files[0].endswith("0.wav")
    per_file = np.split(frames, np.cumsum(lengths)[:-1])
    np.testing.assert_allclose(np.stack([f.mean(0) for f in per_file]), z, atol=1e-5)  # the rows above are their means
    assert main(["embed", str(run), str(tmp_path / "new"), "-o", str(tmp_path / "f.npy"), "--frames"]) == 2


def write_pairs_tsv(root: Path, per_class: int, seed: int) -> tuple[Path, list[int]]:
    """open_clip's TSV (``filepath``, ``title``) over a PNG folder; returns the table and each row's class."""
    labels = write_png_folder(root, per_class, seed)
    names = ["bright", "dark"]
    rows = [f"{names[label]}/{i:02d}.png\ta {names[label]} square number {i}"
            for label in (0, 1) for i in range(per_class)]
    (root / "pairs.tsv").write_text("filepath\ttitle\n" + "\n".join(rows) + "\n")
    return root / "pairs.tsv", labels


def test_own_image_text_table_trains_embeds_and_classifies(tmp_path):
    table, _ = write_pairs_tsv(tmp_path / "pairs", per_class=10, seed=0)
    new, labels = write_pairs_tsv(tmp_path / "new", per_class=6, seed=1)
    run = tmp_path / "run"
    overrides = [f"data.path={table}", "encoder.embed_dim=16",
                 "encoder.vision={image_size: 32, layers: [1, 1, 1, 1], width: 16}",
                 "encoder.text={width: 16, heads: 2, layers: 1}", "train.max_steps=3", "train.batch_size=8",
                 "train.warmup_steps=1", "train.eval_every=1000", *QUIET, f"train.output_dir={run}"]
    assert main(["train", str(CONFIGS / "clip_image_text.yaml"), *overrides]) == 0
    assert main(["embed", str(run), str(new), "-o", str(tmp_path / "z.npy"), "--no-progress"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (12, 16) and np.isfinite(z).all()  # one row per image of the new table
    assert LogisticRegression().fit(z, labels).score(z, labels) >= 0.5


class _Unreadable(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> torch.Tensor:
        raise ValueError("image file pngs/dark/07.png cannot be decoded: bad chunk")


def test_error_from_a_dataloader_worker_is_its_own_line():
    loader = torch.utils.data.DataLoader(_Unreadable(), num_workers=1)
    with pytest.raises(ValueError) as raised:
        next(iter(loader))
    assert "Original Traceback" in str(raised.value)  # what torch re-raises in the main process
    assert error_line(raised.value) == "ValueError: image file pngs/dark/07.png cannot be decoded: bad chunk"
