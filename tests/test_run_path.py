"""The one run path and its commands: train (evaluating only with labels), rerun, evaluate, export, embed; data errors.

Runs are a few steps of SimCLR on the digits or tiny HDF5 image files, and
CEBRA on a short synthetic recording: what is checked is the plumbing (files,
messages, exit codes, equal embeddings), not what was learned.
"""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from contrastive_seq import load_encoder
from contrastive_seq.cli import main
from contrastive_seq.config import ConfigError
from contrastive_seq.data.hdf5_images import save_hdf5_images
from contrastive_seq.experiments import load_experiment_config, load_run
from contrastive_seq.experiments.sections import (
    DataConfig,
    EncoderConfig,
    EvaluationConfig,
    MethodConfig,
    ViewsConfig,
)
from contrastive_seq.export import export_encoder

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "simclr_digits.yaml"
CEBRA = ROOT / "configs" / "cebra_place_cells.yaml"
FAST = ["train.max_steps=3", "train.warmup_steps=1", "train.batch_size=16", "train.progress=false",
        "train.num_workers=0", "evaluation.label_draws=1", "evaluation.linear_probe=false"]
CEBRA_FAST = ["data.num_timepoints=1500", "train.max_steps=3", "train.batch_size=64", "train.progress=false"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hdf5_images(path: Path, labels: bool) -> Path:
    """40 random 8x8 grey images, with labels of 4 classes or none."""
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_hdf5_images(path, images, (torch.arange(40) % 4) if labels else None)
    return path


def image_overrides(path: Path, output: Path) -> list[str]:
    return ["data.name=hdf5_images", f"data.path={path}", f"train.output_dir={output}", *FAST[:6]]


def test_every_registered_variant_has_its_builder():
    """A variant without its section's builder cannot be instantiated, so this fails for any left unbuilt."""
    for base, builder in ((DataConfig, "build"), (ViewsConfig, "build"), (EncoderConfig, "build"),
                          (MethodConfig, "build"), (EvaluationConfig, "evaluator")):
        for name, variant in base.variants.items():
            assert getattr(variant, builder) is not getattr(base, builder), f"{base.__name__} {name!r} has no {builder}"
            assert not variant.__abstractmethods__, f"{base.__name__} {name!r} leaves {set(variant.__abstractmethods__)}"


def test_a_section_of_another_domain_is_a_config_error_naming_it(capsys):
    assert main(["train", str(CEBRA), "method={name: simclr}"]) == 2
    assert "encoder 'offset' needs method.name in ['cebra'], got 'simclr'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"method 'cpc' needs views.name in \['crops'\]"):
        from contrastive_seq.experiments.audio import CPCMethodConfig

        CPCMethodConfig().build(load_experiment_config(DIGITS), None, None)


def test_an_evaluation_section_without_a_name_takes_the_datas_default():
    assert load_experiment_config(DIGITS, ["evaluation={knn_k: 3}"]).evaluation.name == "probes"
    assert load_experiment_config(CEBRA, ["evaluation={knn_k: 3}"]).evaluation.name == "decoding"
    assert load_experiment_config(DIGITS, ["evaluation=null"]).evaluation is None


def test_unlabelled_data_trains_and_saves_without_evaluation(tmp_path, capsys):
    data = hdf5_images(tmp_path / "unlabelled.h5", labels=False)
    assert main(["train", str(DIGITS), *image_overrides(data, tmp_path / "run"), "evaluation=null"]) == 0
    printed = capsys.readouterr().out
    assert "no evaluation (evaluation 'probes' needs labels on the training data; it has none)" in printed
    assert f"to {tmp_path / 'run'}" in printed and "checkpoint.pt" in printed
    assert json.loads((tmp_path / "run" / "results.json").read_text())["results"] == {}
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3
    # asking for the evaluation on unlabelled data is an error before training
    assert main(["train", str(DIGITS), *image_overrides(data, tmp_path / "asked")]) == 2
    assert "evaluation 'probes' needs labels" in capsys.readouterr().err
    assert not (tmp_path / "asked" / "checkpoint.pt").exists()
    # labelled data told not to evaluate: trains and saves only
    labelled = hdf5_images(tmp_path / "labelled.h5", labels=True)
    assert main(["train", str(DIGITS), *image_overrides(labelled, tmp_path / "off"), "evaluation={name: none}"]) == 0
    assert json.loads((tmp_path / "off" / "results.json").read_text())["results"] == {}


@pytest.fixture(scope="module")
def cebra_run(tmp_path_factory):
    """The neural main job on a short recording, a few steps; ``(output directory, what it printed)``."""
    run = tmp_path_factory.mktemp("cebra") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(CEBRA), *CEBRA_FAST, f"train.output_dir={run}"]) == 0
    return run, printed.getvalue()


def test_rerunning_a_finished_run_says_where_its_results_are(cebra_run, capsys):
    """The neural main job twice: the second run trains nothing, prints the stored table and exits 0."""
    run, first = cebra_run
    assert "embedding.png" in first and "loss.png" in first and f"to {run}" in first
    results = (run / "results.json").read_text()
    assert main(["train", str(CEBRA), *CEBRA_FAST, f"train.output_dir={run}"]) == 0
    second = capsys.readouterr().out
    assert f"the run in {run} is finished (step 3 of 3); its results are in {run / 'results.json'}" in second
    assert "cebra (trained)" in second
    assert (run / "results.json").read_text() == results


def test_evaluate_export_and_embed_a_trained_run(cebra_run, tmp_path):
    run, _ = cebra_run
    trained = json.loads((run / "results.json").read_text())["results"]
    assert main(["evaluate", str(run)]) == 0  # the same rows again, the random encoder rebuilt from the run's seed
    again = json.loads((run / "results.json").read_text())["results"]
    assert again.keys() == trained.keys()
    for row, scores in trained.items():
        assert again[row] == pytest.approx(scores, abs=1e-6), row
    assert main(["export", str(run), "-o", str(tmp_path / "encoder.pt")]) == 0
    torch.load(tmp_path / "encoder.pt", weights_only=True)  # plain tensors and containers only
    assert main(["embed", str(tmp_path / "encoder.pt"), "test", "-o", str(tmp_path / "test.npy"), "--no-progress"]) == 0
    assert main(["embed", str(run), "test", "-o", str(tmp_path / "test.h5"), "--batch-size", "77", "--no-progress"]) == 0
    experiment, _ = load_run(run)
    with torch.no_grad():
        whole = experiment.method.encoder.eval().embed_sequence(experiment.data.test.neural).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "test.npy"), whole, atol=1e-5)
    with h5py.File(tmp_path / "test.h5") as file:
        np.testing.assert_allclose(file["embedding"][:], whole, atol=1e-5)  # chunks of 77 with context margins
    np.save(tmp_path / "neural.npy", experiment.data.test.neural.numpy())
    assert main(["embed", str(tmp_path / "encoder.pt"), str(tmp_path / "neural.npy"), "-o", str(tmp_path / "n.npy"),
                 "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "n.npy"), whole, atol=1e-5)


def test_load_encoder_embeds_images_like_the_trained_method(tmp_path):
    data = hdf5_images(tmp_path / "images.h5", labels=True)
    run = tmp_path / "run"
    assert main(["train", str(DIGITS), *image_overrides(data, run), "evaluation.label_draws=1",
                 "evaluation.linear_probe=false"]) == 0
    encoder = load_encoder(export_encoder(run, tmp_path / "encoder.pt"))
    experiment, _ = load_run(run)
    images = experiment.data.test.inputs
    with torch.no_grad():
        expected = experiment.method.eval().embed(images).numpy()
    np.testing.assert_allclose(encoder.embed(images, batch_size=3), expected, atol=1e-5)
    assert encoder.sample_shape == (1, 8, 8)


def test_data_errors_are_one_line_naming_the_file(tmp_path, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    cases = [
        (["train", str(DIGITS), "data.name=hdf5_images", f"data.path={folder}"], f"{folder} is a directory"),
        (["train", str(DIGITS), "data.name=hdf5_images", f"data.path={tmp_path / 'missing.h5'}"], "missing.h5 does not"),
        (["embed", str(tmp_path / "nothing.pt"), "test", "-o", str(tmp_path / "x.npy")], "nothing.pt"),
        (["embed", str(DIGITS), str(folder), "-o", str(tmp_path / "x.npy")], str(DIGITS)),
        (["evaluate", str(tmp_path)], "has no checkpoint.pt"),
    ]
    for args, named in cases:
        assert main(args) == 2, args
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("contrastive-seq: error:") and named in lines[0], lines


def test_help_imports_no_torch():
    code = "import sys; from contrastive_seq.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    code += "assert 'torch' not in sys.modules, 'torch imported for --help'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_a_missing_or_unreadable_audio_file_is_named(tmp_path):
    from contrastive_seq.data.audio import read_audio

    with pytest.raises(FileNotFoundError, match=f"audio file {tmp_path / 'gone.wav'} does not exist"):
        read_audio(tmp_path / "gone.wav")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        read_audio(tmp_path)
    (tmp_path / "noise.wav").write_bytes(b"RIFF but not really")
    with pytest.raises(ValueError, match=f"audio file {tmp_path / 'noise.wav'} cannot be read"):
        read_audio(tmp_path / "noise.wav")
