"""Build the parts of an experiment from its config sections.

Each ``build_*`` function dispatches on the type of its config section;
domain modules register one implementation per variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

from torch import nn

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.experiments.sections import ExperimentConfig
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.views.base import Views


@dataclass
class Experiment:
    """Everything the Trainer and the evaluation need, built from one config."""

    method: Method
    sampler: Sampler
    views: Views
    train_data: ArrayDataset
    test_data: ArrayDataset


@singledispatch
def build_data(config: object) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` datasets for a ``data`` section."""
    raise TypeError(f"no data builder for {type(config).__name__}")


@singledispatch
def build_views(config: object, data: ArrayDataset) -> Views:
    """The views step for a ``views`` section, sized to ``data``'s samples."""
    raise TypeError(f"no views builder for {type(config).__name__}")


@singledispatch
def build_encoder(config: object, data: ArrayDataset) -> nn.Module:
    """The encoder for an ``encoder`` section; it exposes ``output_dim``."""
    raise TypeError(f"no encoder builder for {type(config).__name__}")


@singledispatch
def build_method(config: object, encoder: nn.Module, data: ArrayDataset) -> tuple[Method, Sampler]:
    """The method and the sampler it pairs with, for a ``method`` section."""
    raise TypeError(f"no method builder for {type(config).__name__}")


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Build data, views, encoder, method and sampler (no training yet)."""
    train_data, test_data = build_data(config.data)
    views = build_views(config.views, train_data)
    encoder = build_encoder(config.encoder, train_data)
    method, sampler = build_method(config.method, encoder, train_data)
    return Experiment(method, sampler, views, train_data, test_data)
