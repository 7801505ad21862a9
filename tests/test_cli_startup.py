"""Reading and checking a config imports no heavy dependency: ``--help``, ``config`` and config errors answer at once.

Each case runs ``contrastive_seq.cli.main`` in a fresh interpreter and lists
which of torch and the domains' libraries it imported; only a builder (a run)
may import them. The time this saves is measured by hand, not here (see
docs/commands.md).
"""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
HEAVY = ("torch", "scipy", "sklearn", "torchvision", "torchaudio", "open_clip", "transformers", "h5py", "matplotlib")

# runs main(argv) and prints, last, its exit status and the heavy modules it imported
RUN_MAIN = f"""
import json, sys
from contrastive_seq.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:  # argparse's --help
    status = exit.code
print(json.dumps({{"status": status, "imported": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def run_main(*argv: str) -> tuple[int, list[str], subprocess.CompletedProcess]:
    """``main(argv)`` in a fresh interpreter of this checkout: exit status, heavy modules it imported, the process."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *argv], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": path}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["status"], report["imported"], result


def changed(config: str, **sections: dict) -> dict:
    """The config ``configs/<config>`` with some keys of some sections replaced."""
    data = yaml.safe_load((CONFIGS / config).read_text())
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return data


@pytest.mark.parametrize(
    "config,overrides,named",
    [
        (changed("simclr_fashion_mnist.yaml", data={"name": "nosuch"}), [], "config.data.name"),
        (changed("simclr_fashion_mnist.yaml", method={"name": "nosuch"}), [], "config.method.name"),
        (changed("cpc_espeak.yaml", train={"max_steps": "ten"}), [], "config.train.max_steps"),
        (changed("clip_emoji.yaml", train={"lr": -1.0}), [], "config.train.lr"),
        (changed("cebra_place_cells.yaml"), ["encoder.architecture=offset99"], "config.encoder: architecture"),
        (changed("cpc_espeak.yaml", method={"context": "rnn"}), [], "config.method.context"),
        (changed("cebra_place_cells.yaml"), ["train.batch_size"], "override 'train.batch_size'"),
        (changed("simclr_fashion_mnist.yaml"), ["views.crop_scale=big"], "config.views.crop_scale"),
    ],
    ids=["unknown-data", "unknown-method", "wrong-type-in-train", "train-out-of-range", "unknown-architecture",
         "unknown-context-model", "override-without-value", "override-of-wrong-type"],
)
def test_a_config_error_is_exit_2_naming_the_setting_without_importing_torch(tmp_path, config, overrides, named):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    status, imported, result = run_main("train", str(path), *overrides)
    assert status == 2
    assert result.stderr.startswith("contrastive-seq: error: ") and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert imported == []


@pytest.mark.parametrize(
    "config", ["simclr_fashion_mnist.yaml", "cebra_place_cells.yaml", "cpc_espeak.yaml", "clip_emoji.yaml"]
)
def test_config_command_of_each_domain_imports_no_heavy_module(config):
    status, imported, result = run_main("config", str(CONFIGS / config), "train.max_steps=7000")
    assert status == 0, result.stderr
    printed = yaml.safe_load(result.stdout.strip().rpartition("\n")[0])
    assert printed["train"]["max_steps"] == 7000
    assert all(printed["data"][key] == value for key, value in changed(config)["data"].items())
    assert imported == []


def test_help_imports_no_heavy_module():
    status, imported, result = run_main("--help")
    assert status == 0 and "train" in result.stdout
    assert imported == []


@pytest.mark.parametrize(
    "package", ["contrastive_seq", "contrastive_seq.training", "contrastive_seq.data", "contrastive_seq.models"]
)
def test_packages_that_import_on_first_use_keep_every_public_name(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert name in dir(module)
        getattr(module, name)  # its module imports and defines it
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nosuch'"):
        getattr(module, "nosuch")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``run`` (a CEBRA config and a checkpoint that is never read), ``cpc`` and ``nwb`` (the same for CPC and
    an NWB file), ``untrained`` (a config, no checkpoint), ``rec.npy`` and ``table.csv``."""
    folder = tmp_path_factory.mktemp("runs")
    for name, config, checkpoint in (("run", "cebra_place_cells.yaml", True), ("cpc", "cpc_espeak.yaml", True),
                                     ("nwb", "own_data/cebra_nwb.yaml", True),
                                     ("untrained", "cebra_place_cells.yaml", False)):
        (folder / name).mkdir()
        (folder / name / "config.yaml").write_text((CONFIGS / config).read_text())
        if checkpoint:
            (folder / name / "checkpoint.pt").write_bytes(b"not a checkpoint: the checks come before it is read")
    (folder / "rec.npy").write_bytes(b"")
    (folder / "table.csv").write_text("a,b\n")
    return folder


@pytest.mark.parametrize(
    "argv,named",
    [
        ("evaluate {d}/nosuch", "run {d}/nosuch is not a directory"),
        ("evaluate {d}/untrained", "run {d}/untrained has no checkpoint.pt"),
        ("evaluate {d}/run train.lr=-1", "config.train.lr must be a positive finite number"),
        ("export {d}/nosuch -o {d}/e.pt", "run {d}/nosuch is not a directory"),
        ("export {d}/untrained -o {d}/e.pt", "run {d}/untrained has no checkpoint.pt"),
        ("export {d}/run -o {d}/encoder.npy", "--output {d}/encoder.npy must end in .pt or .pth"),
        ("embed /nonexistent {d}/rec.npy -o {d}/z.npy", "SOURCE /nonexistent: neither a run folder nor an exported"),
        ("embed {d}/untrained {d}/rec.npy -o {d}/z.npy", "run {d}/untrained has no checkpoint.pt"),
        ("embed {d}/run {d}/missing.npz -o {d}/z.npy", "DATA {d}/missing.npz: no such file or folder"),
        ("embed {d}/nwb {d}/missing.nwb -o {d}/z.npy", "DATA {d}/missing.nwb: no such file or folder"),
        ("embed {d}/run {d}/table.csv -o {d}/z.npy", "DATA {d}/table.csv: expected a .npy or .npz array file"),
        ("embed {d}/run {d}/rec.npy -o {d}/z.npy --features context",
         "--features='context': the encoder of method 'cebra' offers ['encoder']"),
        ("embed {d}/cpc {d}/rec.npy -o {d}/z.npy --features contxt",
         "--features='contxt': the encoder of method 'cpc' offers ['frame', 'context']"),
        ("embed {d}/run {d}/rec.npy -o {d}/z.csv", "--output {d}/z.csv must end in .npy, .h5 or .hdf5"),
        ("embed {d}/cpc {d}/rec.npy -o {d}/z.npy --frames", "--output {d}/z.npy must end in .h5 or .hdf5 (with --frames"),
        ("embed {d}/run {d}/rec.npy -o {d}/nowhere/z.npy", "--output {d}/nowhere/z.npy: the folder {d}/nowhere does not"),
        ("embed {d}/run {d}/rec.npy -o {d}/z.npy --batch-size 0", "argument --batch-size: expected a positive integer"),
        ("embed {d}/run {d}/rec.npy -o {d}/z.npy --batch-size ten", "argument --batch-size: expected a positive integer"),
        ("embed {d}/run {d}/rec.npy data.nosuch=1 -o {d}/z.npy", "unknown key config.data.nosuch"),
    ],
    ids=["evaluate-no-folder", "evaluate-no-checkpoint", "evaluate-bad-override", "export-no-folder",
         "export-no-checkpoint", "export-output-suffix", "embed-no-source", "embed-no-checkpoint", "embed-no-data",
         "embed-no-data-file-of-the-runs-kind", "embed-data-not-an-array", "embed-unknown-features", "embed-unknown-cpc-features",
         "embed-output-suffix", "embed-frames-not-hdf5", "embed-output-folder-missing", "embed-batch-size-zero",
         "embed-batch-size-not-a-number", "embed-bad-override"],
)
def test_a_bad_argument_of_evaluate_export_embed_is_exit_2_naming_it_without_importing_torch(runs, argv, named):
    status, imported, result = run_main(*argv.format(d=runs).split())
    assert status == 2
    assert result.stderr.startswith("contrastive-seq: error: ") and named.format(d=runs) in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert imported == []


def test_export_encoder_in_python_refuses_a_file_it_would_not_write_as_an_export(runs):
    """The same check as ``export -o``, before the run is read (its checkpoint here is not one)."""
    from contrastive_seq.config import ConfigError
    from contrastive_seq.export import export_encoder

    with pytest.raises(ConfigError, match=r"path .*encoder\.npy must end in \.pt or \.pth"):
        export_encoder(runs / "run", runs / "encoder.npy")
