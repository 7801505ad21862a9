"""The ``contrastive-seq`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from contrastive_seq.config import ConfigError, to_mapping
from contrastive_seq.distributed import leave_process_group
from contrastive_seq.training.checkpoint import CheckpointError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrastive-seq",
        description="Contrastive and self-supervised representation learning: train a method from a YAML config.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("train", "train a method from a config, then probe its representation against baselines"),
        ("config", "print the resolved config (defaults and overrides applied) without training"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("config", help="YAML file, e.g. configs/simclr_digits.yaml")
        command.add_argument(
            "overrides", nargs="*", metavar="section.key=value", help="override config values, e.g. train.max_steps=50"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    from contrastive_seq.experiments.run import load_experiment_config, run_experiment

    try:
        config = load_experiment_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"contrastive-seq: error: {error}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(yaml.safe_dump(to_mapping(config), sort_keys=False), end="")
        return 0
    try:
        run_experiment(config)
    except (CheckpointError, FileNotFoundError) as error:
        print(f"contrastive-seq: error: {error}", file=sys.stderr)
        return 2
    leave_process_group()  # under torchrun; nothing on one process
    return 0


if __name__ == "__main__":
    sys.exit(main())
