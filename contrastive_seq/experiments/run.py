"""Run an experiment end to end: build, train, then probe against baselines."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from functools import singledispatch
from pathlib import Path

import torch

from contrastive_seq import distributed
from contrastive_seq.atomic_files import write_atomically
from contrastive_seq.config import apply_overrides, from_mapping, load_yaml, to_mapping
from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.monitor import collapse_scores
from contrastive_seq.evaluation.probes import few_label_knn_accuracy, knn_accuracy, linear_probe_accuracy
from contrastive_seq.experiments.build import build_experiment
from contrastive_seq.experiments.sections import EvaluationConfig, ExperimentConfig
from contrastive_seq.methods.base import Method
from contrastive_seq.training.trainer import Trainer


def load_experiment_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``section.key=value`` overrides, check it into an :class:`ExperimentConfig`."""
    return from_mapping(ExperimentConfig, apply_overrides(load_yaml(path), overrides), key="config")


def probe_scores(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, config: EvaluationConfig
) -> dict[str, float]:
    """kNN, few-label 1-NN and (optionally) linear-probe accuracy of one embedding ``(n, dim)``."""
    scores = {
        f"knn{config.knn_k}_accuracy": knn_accuracy(train_x, train_y, test_x, test_y, k=config.knn_k),
        f"1nn_{config.labels_per_class}_per_class_accuracy": few_label_knn_accuracy(
            train_x, train_y, test_x, test_y, config.labels_per_class, repeats=config.label_draws
        ),
    }
    if config.linear_probe:
        scores["linear_probe_accuracy"] = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    return scores


def _method_scores(method: Method, train: ArrayDataset, test: ArrayDataset, config: EvaluationConfig) -> dict[str, float]:
    return probe_scores(
        embed_in_batches(method, train.inputs), train.labels, embed_in_batches(method, test.inputs), test.labels, config
    )


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per representation, one column per score."""
    columns = list(next(iter(rows.values())))
    width = max(len(name) for name in rows) + 2
    lines = ["representation".ljust(width) + "  ".join(columns)]
    for name, scores in rows.items():
        lines.append(name.ljust(width) + "  ".join(f"{scores[c]:.4f}".ljust(len(c)) for c in columns))
    return "\n".join(lines)


def report_results(config: ExperimentConfig, results: dict[str, dict[str, float]]) -> Path | None:
    """Print the ``{representation: {score: value}}`` table and write it with the resolved config (atomically).

    Returns the output directory holding ``results.json``, or ``None`` when
    ``train.output_dir`` is not set (then nothing is written).
    """
    print(format_table(results))
    if config.train.output_dir is None:
        return None
    output = Path(config.train.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report = json.dumps({"config": to_mapping(config), "results": results}, indent=2)
    write_atomically(output / "results.json", lambda file: file.write(report.encode()))
    return output


@singledispatch
def experiment_runner(method_config: object) -> Callable[[ExperimentConfig], dict[str, dict[str, float]]] | None:
    """The run of a method family with its own evaluation (CLIP registers one); ``None``: the train-and-probe run below."""
    return None


def run_experiment(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Train the configured method and compare its representation with raw inputs and a random encoder.

    A method family that registered its own run with :func:`experiment_runner` is dispatched to it.

    Returns ``{representation: {score: value}}`` and, on rank 0, prints the
    table and writes it with the resolved config to ``train.output_dir/results.json``
    (when an output directory is set).
    """
    runner = experiment_runner(config.method)
    if runner is not None:
        return runner(config)
    torch.manual_seed(config.train.seed)
    experiment = build_experiment(config)
    untrained = copy.deepcopy(experiment.method)
    train, test = experiment.train_data, experiment.test_data

    def knn_during_training(method: Method) -> dict[str, float]:
        train_x, test_x = embed_in_batches(method, train.inputs), embed_in_batches(method, test.inputs)
        knn = knn_accuracy(train_x, train.labels, test_x, test.labels, k=config.evaluation.knn_k)
        return {"knn_accuracy": knn, **collapse_scores(test_x)}

    trainer = Trainer(
        experiment.method,
        config.train,
        train,
        experiment.sampler,
        experiment.views,
        evaluate=knn_during_training,
        run_settings=config.run_settings(),
    )
    trainer.fit()
    if distributed.rank() != 0:
        return {}
    results = {
        "raw inputs": probe_scores(
            train.inputs.flatten(1), train.labels, test.inputs.flatten(1), test.labels, config.evaluation
        ),
        "random encoder": _method_scores(untrained, train, test, config.evaluation),
        f"{config.method.name} (trained)": _method_scores(experiment.method, train, test, config.evaluation),
    }
    report_results(config, results)
    return results
