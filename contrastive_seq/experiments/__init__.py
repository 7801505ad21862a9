"""Experiments: typed config sections, builders, and the end-to-end run behind ``contrastive-seq train``.

Importing this package registers every domain's variants (data, views,
encoders, methods) so that configs can name them.
"""

from contrastive_seq.experiments import clip, images  # noqa: F401  (register the CLIP and image variants)
from contrastive_seq.experiments import vision  # noqa: F401  (registers the vision variants)
from contrastive_seq.experiments import audio  # noqa: F401  (registers the CPC speech variants)
from contrastive_seq.experiments import timeseries  # noqa: F401  (registers the neural time-series variants)
from contrastive_seq.experiments.build import Experiment, build_experiment
from contrastive_seq.experiments.run import load_experiment_config, run_experiment
from contrastive_seq.experiments.sections import ExperimentConfig

__all__ = ["Experiment", "ExperimentConfig", "build_experiment", "load_experiment_config", "run_experiment"]
