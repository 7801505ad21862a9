"""Experiments: typed config sections whose variants carry their builders, and the one run path behind the commands.

Importing this package registers every domain's variants (data, views,
encoders, methods, evaluations) so that configs can name them; a domain
module imports its heavy dependencies only when its builders run.
"""

from contrastive_seq.experiments import audio, clip, timeseries, vision  # noqa: F401  (register the domains' variants)
from contrastive_seq.experiments.run import (
    Experiment,
    build_experiment,
    evaluate_run,
    load_experiment_config,
    load_run,
    run_experiment,
)
from contrastive_seq.experiments.sections import ExperimentConfig

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "build_experiment",
    "evaluate_run",
    "load_experiment_config",
    "load_run",
    "run_experiment",
]
