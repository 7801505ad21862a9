"""The ``contrastive-seq`` command line: ``train``, ``evaluate``, ``export``, ``embed`` and ``config``.

Only the standard library is imported until a command runs, so ``--help``
answers at once; a command imports what it needs. Errors about the user's
input (config, data files, checkpoints) are one line on stderr and exit
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from contrastive_seq.experiments.sections import ExperimentConfig

OVERRIDES_HELP = "override config values, e.g. train.max_steps=50"


def _add_overrides(command: argparse.ArgumentParser) -> None:
    command.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDES_HELP)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like the CLI's other errors (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"contrastive-seq: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    """``--batch-size``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="contrastive-seq",
        description="Contrastive and self-supervised representation learning: train from a YAML config, "
        "evaluate, export the encoder, embed new data.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train from a config; evaluate when the data has labels or the config asks",
        description="Train from a config, then (when the data has labels or the config has an evaluation "
        "section) evaluate against baselines. Rerunning a finished run prints where its results are.",
    )
    train.add_argument("config", help="YAML file, e.g. configs/simclr_digits.yaml")
    _add_overrides(train)
    config = commands.add_parser(
        "config", help="print the resolved config (defaults and overrides applied) without training"
    )
    config.add_argument("config", help="YAML file")
    _add_overrides(config)
    evaluate = commands.add_parser("evaluate", help="evaluate a trained run again and rewrite its results.json")
    evaluate.add_argument("run", help="the run's output directory (train.output_dir)")
    _add_overrides(evaluate)
    export = commands.add_parser(
        "export", help="write a run's encoder with its config to one file (load it with contrastive_seq.load_encoder)"
    )
    export.add_argument("run", help="the run's output directory (train.output_dir)")
    export.add_argument("-o", "--output", required=True, help="the file to write, e.g. encoder.pt")
    embed = commands.add_parser(
        "embed",
        help="embed data with a run's or an exported encoder into .npy or HDF5",
        description="Embed DATA in batches, reading as it goes: a file or folder of the kind the run trained on "
        "(a recording, a WAV folder, an image folder, an image-text table; read with the run's data settings), "
        "a .npy (memory-mapped) or .npz array in the layout the run trained on (--key), or 'train' / 'test': "
        "that part of the config's data section (overrides such as data.path=... pick other data).",
    )
    embed.add_argument("source", help="a run's output directory or an exported encoder file")
    embed.add_argument("data", help="a file or folder like the run's data, a .npy / .npz array, or 'train' / 'test'")
    embed.add_argument("-o", "--output", required=True, help="output .npy, .h5 or .hdf5 (dataset 'embedding')")
    embed.add_argument("--key", default=None, help="the array of a .npz file holding several")
    embed.add_argument("--batch-size", type=_positive_int, default=1024, help="rows (or time points) per batch (default 1024)")
    embed.add_argument("--features", default=None,
                       help="which representation: CPC offers 'context' (c_t, the default) and 'frame' (z_t); "
                       "other methods their encoder's output")
    embed.add_argument("--frames", action="store_true",
                       help="audio: every frame of each file (one row per 10 ms), concatenated in file order, into "
                       "HDF5 with datasets embedding, lengths (frames per file) and files; default: one row per file")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_overrides(embed)
    return parser


def _train(args: argparse.Namespace) -> None:
    import yaml

    from contrastive_seq.config import to_mapping
    from contrastive_seq.experiments import load_experiment_config, run_experiment

    config = load_experiment_config(args.config, args.overrides)
    if args.command == "config":
        print(yaml.safe_dump(to_mapping(config), sort_keys=False), end="")
        return
    from contrastive_seq.distributed import leave_process_group  # torch: only once a run starts

    run_experiment(config)
    leave_process_group()  # under torchrun; nothing on one process


def _evaluate(args: argparse.Namespace) -> None:
    from contrastive_seq.experiments.run import run_config

    run_config(args.run, args.overrides)  # the folder, its checkpoint and config: checked before torch is imported
    from contrastive_seq.experiments import evaluate_run

    evaluate_run(args.run, args.overrides)


def _export(args: argparse.Namespace) -> None:
    from contrastive_seq.command_files import EXPORT_SUFFIXES, check_output_path
    from contrastive_seq.experiments.run import run_config

    run_config(args.run)
    check_output_path(args.output, EXPORT_SUFFIXES, "--output", folder_must_exist=False)  # export creates the folder
    from contrastive_seq.export import export_encoder

    print(f"wrote the encoder of {args.run} to {export_encoder(args.run, args.output)}")


def _reads_array(config: ExperimentConfig, args: argparse.Namespace) -> bool:
    """Whether ``embed`` reads DATA as a .npy / .npz array, rather than as a file or folder of the run's data kind."""
    return not (config.data.reads_files() and args.key is None and Path(args.data).suffix != ".npy")


def _check_data(config: ExperimentConfig, args: argparse.Namespace) -> None:
    """DATA is there, in a form the run's data section or the array reader takes (checked without torch)."""
    from contrastive_seq.command_files import check_array_path

    if args.data in ("train", "test"):
        return
    if _reads_array(config, args):
        check_array_path(args.data, "DATA")
    else:
        config.data.check_samples_path(args.data, "DATA")


def _check_embed(args: argparse.Namespace) -> ExperimentConfig | None:
    """Check ``embed``'s arguments without torch; the run's config when SOURCE is a run folder.

    An exported SOURCE file holds its config with the weights, so what
    depends on it (``--features``, DATA) is checked once it is loaded, before any data is read.
    """
    from contrastive_seq.command_files import EMBEDDING_SUFFIXES, FRAMES_REASON, FRAMES_SUFFIXES, check_output_path
    from contrastive_seq.config import ConfigError
    from contrastive_seq.experiments.run import run_config

    if args.frames:
        check_output_path(args.output, FRAMES_SUFFIXES, "--output", why=f"with --frames, {FRAMES_REASON}")
    else:
        check_output_path(args.output, EMBEDDING_SUFFIXES, "--output")
    if Path(args.source).is_file():
        return None
    if not Path(args.source).is_dir():
        raise ConfigError(f"SOURCE {args.source}: neither a run folder nor an exported encoder file is there")
    config = run_config(args.source, args.overrides)
    config.method.check_features(args.features, argument="--features")
    _check_data(config, args)
    return config


def _embed(args: argparse.Namespace) -> None:
    config = _check_embed(args)
    from tqdm import tqdm

    from contrastive_seq.command_files import read_array, write_embedding
    from contrastive_seq.config import ConfigError
    from contrastive_seq.export import encoder_from_run, load_encoder

    if config is not None:
        encoder = encoder_from_run(args.source, args.overrides)  # the run's config and checkpoint, not its data
    else:
        from contrastive_seq.config import apply_overrides, to_mapping
        from contrastive_seq.experiments.run import config_from_mapping

        encoder = load_encoder(args.source)
        config = config_from_mapping(apply_overrides(to_mapping(encoder.config), args.overrides))
        _check_data(config, args)
    encoder.network(args.features)  # an unknown representation is refused before any data is read
    if args.data in ("train", "test"):
        part = getattr(config.data.build(config), args.data)
        if part is None:
            raise ConfigError(f"the data section {config.data.name!r} has no {args.data} part")
        inputs = config.data.samples(part)
    elif not _reads_array(config, args):
        inputs = config.data.read_samples(args.data)  # a file or folder of the kind the run trained on
    else:
        inputs = read_array(args.data, args.key)
    if args.frames:
        names = getattr(inputs, "names", None) or [args.data]  # the files of a folder, or the one waveform
        blocks = tqdm(encoder.frames(inputs, args.features), total=len(names), desc="embed", unit="file",
                      disable=args.no_progress)
        rows, dim = write_embedding(blocks, args.output, names)
    else:
        batches = -(-len(inputs) // args.batch_size)
        blocks = tqdm(
            encoder.embed_batches(inputs, args.batch_size, args.features), total=batches, desc="embed", unit="batch",
            disable=args.no_progress,
        )
        rows, dim = write_embedding(blocks, args.output)
    print(f"wrote embeddings ({rows}, {dim}) to {args.output}")


COMMANDS = {"train": _train, "config": _train, "evaluate": _evaluate, "export": _export, "embed": _embed}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    from contrastive_seq.config import ConfigError
    from contrastive_seq.training.errors import CheckpointError

    try:
        COMMANDS[args.command](args)
    except (ConfigError, CheckpointError, OSError, ValueError) as error:
        # the user's input: the message names the setting or the file (and row or dataset)
        print(f"contrastive-seq: error: {error_line(error)}", file=sys.stderr)
        return 2
    return 0


def error_line(error: Exception) -> str:
    """The one line the CLI prints for ``error``.

    An error raised in a DataLoader worker (an image that fails to decode
    during training) reaches the main process with the worker's traceback
    in its message; only its last line, the original error naming the file, is kept.
    """
    message = str(error)
    if isinstance(error, IsADirectoryError) and error.filename:
        message = f"{error.filename} is a directory; a file was expected"
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1]
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
