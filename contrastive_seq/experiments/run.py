"""The one run path: config → build (each section's builder) → Trainer → evaluation → report.

Every domain goes through :func:`run_experiment`; what differs between
domains lives in their section variants (see :mod:`contrastive_seq.experiments.sections`).
A run writes into ``train.output_dir``: ``checkpoint.pt`` and
``metrics.jsonl`` (the Trainer), ``config.yaml`` (the resolved config),
``results.json`` (the evaluation table, empty when nothing was evaluated),
``loss.png``, the evaluator's figures and the files the encoder's config
keeps (a Hugging Face text tower's ``text_tower/``: config and tokenizer).
:func:`load_run` rebuilds a run from that directory for ``evaluate`` (data
included); ``export`` and ``embed`` rebuild only its encoder, from the
config, the kept files and the checkpoint's :func:`encoder_record` (see
:mod:`contrastive_seq.export`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.config import ConfigError, apply_overrides, from_mapping, load_yaml, to_mapping
from contrastive_seq.experiments.sections import (
    DataConfig,
    DataSplit,
    EvaluationConfig,
    Evaluator,
    ExperimentConfig,
    MissingLabels,
)
from contrastive_seq.training.config import CHECKPOINT_NAME

if TYPE_CHECKING:
    from torch import nn

    from contrastive_seq.methods.base import Method
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views

CONFIG_NAME = "config.yaml"
RESULTS_NAME = "results.json"
LOSS_FIGURE_NAME = "loss.png"


def config_from_mapping(data: Mapping[str, Any]) -> ExperimentConfig:
    """Check a mapping of sections into an :class:`ExperimentConfig`.

    An ``evaluation`` section without a ``name`` takes the data's default
    evaluation (``DataConfig.evaluation`` of the named data variant).
    """
    data = dict(data)
    evaluation, source = data.get("evaluation"), data.get("data")
    if isinstance(evaluation, Mapping) and "name" not in evaluation and isinstance(source, Mapping):
        variant = DataConfig.variants.get(source.get("name"))
        if variant is not None:
            data["evaluation"] = {"name": variant.evaluation, **evaluation}
    return from_mapping(ExperimentConfig, data, key="config")


def load_experiment_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``section.key=value`` overrides, check it into an :class:`ExperimentConfig`."""
    return config_from_mapping(apply_overrides(load_yaml(path), overrides))


@dataclass
class Experiment:
    """Everything one run trains and evaluates, built from its config.

    Attributes:
        config: the resolved config.
        data: the ``data`` section's train and held-out parts.
        encoder: what the ``encoder`` section built (inside ``method``; what ``export`` saves).
        method, sampler, views: what the Trainer runs.
    """

    config: ExperimentConfig
    data: DataSplit
    encoder: nn.Module
    method: Method
    sampler: Sampler
    views: Views


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Build data, encoder, method with its sampler, and views, in that order (no training yet)."""
    data = config.data.build(config)
    encoder = config.encoder.build(config, data.sample_shape)
    method, sampler = config.method.build(config, encoder, data.train)
    views = config.views.build(config, data.train, method)
    return Experiment(config, data, encoder, method, sampler, views)


#: the key of :func:`encoder_record` in the ``run_settings`` a checkpoint keeps
ENCODER_RECORD = "export"


def encoder_record(experiment: Experiment) -> dict[str, Any]:
    """What a checkpoint keeps to rebuild the trained encoder without the data (for ``export`` and ``embed``).

    ``sample_shape``: the shape of one input sample, which the encoder's
    builder needs (channels, image size); ``state_keys``: for the encoder and
    each of the method's feature networks, ``{its state-dict key: the method's
    state-dict key}`` of every weight and buffer (found by identity, so any
    method's layout works).
    """
    owner = {id(value): key for key, value in experiment.method.state_dict(keep_vars=True).items()}
    modules = {"encoder": experiment.encoder, **experiment.method.feature_networks()}
    keys = {}
    for name, module in modules.items():
        own = module.state_dict(keep_vars=True)
        lost = [key for key, value in own.items() if id(value) not in owner]
        if lost:
            raise RuntimeError(f"the method does not hold the {name}'s {lost[0]!r}: it cannot be exported")
        keys[name] = {key: owner[id(value)] for key, value in own.items()}
    return {"sample_shape": list(experiment.data.sample_shape), "state_keys": keys}


def choose_evaluator(experiment: Experiment) -> Evaluator | None:
    """The evaluator of the ``evaluation`` section, or (section left out) the data's default one when it applies.

    A given section whose needs the data does not meet is a :class:`MissingLabels`
    error (before training); a default one is skipped with a printed reason.
    """
    from contrastive_seq import distributed

    config = experiment.config
    if config.evaluation is not None:
        return config.evaluation.evaluator(experiment)  # None for evaluation.name 'none'
    default = EvaluationConfig.variants[type(config.data).evaluation]()
    try:
        return default.evaluator(experiment)
    except MissingLabels as reason:
        if distributed.rank() == 0:
            print(f"no evaluation ({reason}): the run trains and saves its encoder")
        return None


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per representation, one column per score."""
    if not rows:
        return "(no results)"
    columns = list(next(iter(rows.values())))
    width = max(len(name) for name in rows) + 2
    lines = ["representation".ljust(width) + "  ".join(columns)]
    for name, scores in rows.items():
        lines.append(name.ljust(width) + "  ".join(f"{scores[c]:.4f}".ljust(len(c)) for c in columns))
    return "\n".join(lines)


def report_results(config: ExperimentConfig, results: dict[str, dict[str, float]]) -> Path | None:
    """Print the ``{representation: {score: value}}`` table (when there is one) and write it with the resolved config.

    ``results.json`` is replaced atomically. Returns the output directory, or
    ``None`` when ``train.output_dir`` is not set (then nothing is written).
    """
    if results:
        print(format_table(results))
    if config.train.output_dir is None:
        return None
    output = Path(config.train.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report = json.dumps({"config": to_mapping(config), "results": results}, indent=2)
    write_atomically(output / RESULTS_NAME, lambda file: file.write(report.encode()))
    return output


def _write_config(config: ExperimentConfig, output: Path) -> None:
    """Write ``config.yaml`` and copies of the encoder's :meth:`~EncoderConfig.kept_files` into ``output``."""
    text = yaml.safe_dump(to_mapping(config), sort_keys=False)
    output.mkdir(parents=True, exist_ok=True)
    write_atomically(output / CONFIG_NAME, lambda file: file.write(text.encode()))
    for name, source in config.encoder.kept_files().items():
        content = source.read_bytes()
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(output / name, lambda file, content=content: file.write(content))


def _finished_results(output: Path) -> dict[str, dict[str, float]] | None:
    """The results a finished run in ``output`` stored, or ``None`` when it stored none (or they are unreadable)."""
    try:
        return json.loads((output / RESULTS_NAME).read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _loss_figure(output: Path) -> Path | None:
    """``loss.png`` from the whole ``metrics.jsonl`` (every resumed part of the run), when it holds a loss."""
    from contrastive_seq.plotting import plot_loss, save_figure

    try:
        ax = plot_loss(output / "metrics.jsonl")
    except (OSError, ValueError):
        return None
    ax.set_title("training loss")
    return save_figure(ax.figure, output / LOSS_FIGURE_NAME)


def _evaluate_on_ranks(evaluator: Evaluator | None, trained: Method, untrained: Method | None) -> dict[str, dict[str, float]]:
    """The final table: computed by every rank for an evaluator that shares its work among them
    (:attr:`Evaluator.across_ranks`), else by rank 0 alone (``{}`` on the others, and without an evaluator)."""
    from contrastive_seq import distributed

    if evaluator is None or (not evaluator.across_ranks and distributed.rank() != 0):
        return {}
    return evaluator.results(trained, untrained)


def run_experiment(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Train the configured method, then evaluate it against its baselines when the data allows (or the config asks).

    Returns ``{representation: {score: value}}`` (empty without evaluation) and,
    on rank 0, prints the table and the files written to ``train.output_dir``.
    A run already finished in ``train.output_dir`` trains nothing: it says so,
    prints its stored results and returns them.
    """
    from contrastive_seq import distributed
    from contrastive_seq.seeding import seed_everything
    from contrastive_seq.training.trainer import Trainer

    seed_everything(config.train.seed)
    experiment = build_experiment(config)
    evaluator = choose_evaluator(experiment)
    untrained = copy.deepcopy(experiment.method) if evaluator is not None else None
    output = None if config.train.output_dir is None else Path(config.train.output_dir)
    trainer = Trainer(
        experiment.method,
        config.train,
        experiment.data.train,
        experiment.sampler,
        experiment.views,
        evaluate=evaluator.during_training if evaluator is not None and evaluator.online else None,
        run_settings={**config.run_settings(), ENCODER_RECORD: encoder_record(experiment)},
    )
    trainer.fit()
    trained_now = any("loss" in record for record in trainer.history)  # the same on every rank
    stored = None if trained_now or output is None else _finished_results(output)
    results = {} if stored is not None else _evaluate_on_ranks(evaluator, experiment.method, untrained)
    if distributed.rank() != 0:
        return {}
    if output is not None:  # after fit: a run refused for other settings keeps its own config.yaml
        _write_config(config, output)
    if stored is not None:
        print(f"the run in {output} is finished (step {trainer.step} of {config.train.max_steps}); "
              f"its results are in {output / RESULTS_NAME} (evaluate it again: contrastive-seq evaluate {output})")
        if stored:
            print(format_table(stored))
        return stored
    report_results(config, results)
    if output is not None:
        figures = [_loss_figure(output)]
        if evaluator is not None:
            figures += evaluator.figures(experiment.method, output)
        written = [CONFIG_NAME, CHECKPOINT_NAME, "metrics.jsonl", RESULTS_NAME]
        written += [path.name for path in figures if path is not None]
        print(f"wrote {', '.join(name for name in written if (output / name).exists())} to {output}")
    return results


def run_config(run: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The resolved config of the training run in directory ``run``, with ``overrides`` (e.g. another ``data.path``).

    Reads ``run/config.yaml`` (or the config inside ``run/results.json`` of
    older runs); errors name the directory and what it lacks.
    """
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"run {run} is not a directory (expected a train.output_dir holding {CONFIG_NAME})")
    if not (run / CHECKPOINT_NAME).is_file():
        raise ConfigError(f"run {run} has no {CHECKPOINT_NAME}: train it first (contrastive-seq train CONFIG)")
    if (run / CONFIG_NAME).is_file():
        mapping = load_yaml(run / CONFIG_NAME)
    elif (run / RESULTS_NAME).is_file():
        mapping = json.loads((run / RESULTS_NAME).read_text())["config"]
    else:
        raise ConfigError(f"run {run} holds neither {CONFIG_NAME} nor {RESULTS_NAME}: is it a train.output_dir?")
    mapping = apply_overrides(mapping, overrides)
    if not isinstance(mapping.get("train"), dict):
        mapping["train"] = {}
    mapping["train"]["output_dir"] = str(run)  # where the run is now, wherever it was trained
    return config_from_mapping(mapping)


def load_run(run: str | Path, overrides: Sequence[str] = (), keep_untrained: bool = False) -> tuple[Experiment, Method | None]:
    """Rebuild the experiment of the training run in directory ``run`` and load its trained weights.

    The parts are built with the run's seed in the run's order, so the
    untrained copy (``keep_untrained``; else ``None``) is the run's own
    initialisation; the encoder is built as
    :meth:`~contrastive_seq.experiments.sections.EncoderConfig.rebuilt_from`
    the run folder with ``initial_weights`` (files the run kept stand in for those that are gone).
    """
    from contrastive_seq.seeding import seed_everything
    from contrastive_seq.training.checkpoint import load_checkpoint

    config = run_config(run, overrides)
    seed_everything(config.train.seed)
    encoder = config.encoder.rebuilt_from(Path(run), initial_weights=True)
    experiment = build_experiment(replace(config, encoder=encoder))
    experiment.config = config
    untrained = copy.deepcopy(experiment.method) if keep_untrained else None
    state = load_checkpoint(Path(run) / CHECKPOINT_NAME)
    experiment.method.load_state_dict(state["model"])
    return experiment, untrained


def evaluate_run(run: str | Path, overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Evaluate a trained run again (its ``evaluation`` section, or the data's default): print, rewrite ``results.json``."""
    experiment, untrained = load_run(run, overrides, keep_untrained=True)
    evaluator = choose_evaluator(experiment)
    if evaluator is None:
        raise MissingLabels(f"run {run} has nothing to evaluate")
    results = evaluator.results(experiment.method, untrained)
    report_results(experiment.config, results)
    return results
