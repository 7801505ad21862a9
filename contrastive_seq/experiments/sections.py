"""The sections of an experiment config.

``data``, ``views``, ``encoder`` and ``method`` choose a variant by ``name``;
the variants and their builders live in one module per domain (for example
:mod:`contrastive_seq.experiments.images`), which registers them here.
``train`` is the Trainer's own config; ``evaluation`` sets the probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contrastive_seq.config import Variants, to_mapping
from contrastive_seq.training.trainer import TrainerConfig


class DataConfig(Variants):
    """Which dataset to train on and how to hold out a test split."""


class ViewsConfig(Variants):
    """How sampled indices become model inputs."""


class EncoderConfig(Variants):
    """The backbone that maps inputs to representations."""


class MethodConfig(Variants):
    """The method: heads, loss and what it pairs."""


@dataclass
class EvaluationConfig:
    """Downstream probes on the held-out split, run at the end (kNN also every ``train.eval_every`` steps)."""

    knn_k: int = 10
    labels_per_class: int = 5
    label_draws: int = 10
    linear_probe: bool = True


@dataclass
class ExperimentConfig:
    """A whole run: what data, presented how, encoded by what, trained how, evaluated how."""

    data: DataConfig
    views: ViewsConfig
    encoder: EncoderConfig
    method: MethodConfig
    train: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def run_settings(self) -> dict[str, Any]:
        """The sections that define the trained model besides ``train`` (data, views, encoder, method), as plain values.

        The Trainer keeps them in each checkpoint and refuses to resume one
        written with other values (see :class:`~contrastive_seq.training.trainer.Trainer`).
        """
        return {name: to_mapping(getattr(self, name)) for name in ("data", "views", "encoder", "method")}
