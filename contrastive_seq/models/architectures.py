"""The registry of named time-series encoders: the library's names, CEBRA's names, and the user's own.

An architecture is a builder ``builder(in_channels, output_dim, hidden_dim, normalize=...)``
returning a :class:`~contrastive_seq.models.timeseries.TimeSeriesEncoder`,
plus whether its output is normalised:

- ``normalize=None``: the caller decides (the estimator normalises for
  ``distance="cosine"``): the library's own names ``offset1-mlp``,
  ``offset5``, ``offset10``, ``offset36``;
- ``normalize=True`` / ``False``: fixed by the name, as in CEBRA, where
  ``offset10-model`` always lies on the sphere and ``offset10-model-mse``
  never does.

CEBRA's names (receptive field; normalised?):

================================ ======== ===========
name                             field    normalised
================================ ======== ===========
``offset1-model``                1        yes
``offset1-model-mse``            1        no
``offset5-model``                5        yes
``offset10-model``               10       yes
``offset10-model-mse``           10       no
``offset36-model``               36       yes
``offset36-model-dropout``       36       yes (dropout 0.1 after the first convolution)
``offset36-model-more-dropout``  36       yes (and before every residual convolution)
``offset20-model-4x-subsample``  20       yes, one embedding per 4 time points
``offset40-model-4x-subsample``  40       yes, one embedding per 4 time points
================================ ======== ===========

The two subsampling models are usable but not listed by
:func:`supported_model_architectures`, as in CEBRA. Register your own with
:func:`register_architecture`; the name then works in
:class:`~contrastive_seq.estimator.ContrastiveEmbedding` and
:class:`~contrastive_seq.cebra_api.CEBRA` alike (a saved model stores the
name, so register it again before loading).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from contrastive_seq.models.timeseries import (
    TIME_SERIES_ENCODERS,
    DropoutConvolutionalEncoder,
    PointwiseMLPEncoder,
    SubsamplingEncoder,
    TimeSeriesEncoder,
)

Builder = Callable[..., TimeSeriesEncoder]


@dataclass(frozen=True)
class Architecture:
    """A named encoder: ``builder(in_channels, output_dim, hidden_dim, normalize=...)``.

    Attributes:
        builder: returns a :class:`TimeSeriesEncoder`.
        normalize: ``None`` (the caller decides) or the fixed choice of the name.
        listed: shown by :func:`supported_model_architectures`.
    """

    builder: Builder
    normalize: bool | None = None
    listed: bool = True


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str, builder: Builder, *, normalize: bool | None = None, listed: bool = True, replace: bool = False
) -> None:
    """Make ``name`` an architecture: ``builder(in_channels, output_dim, hidden_dim, normalize=...)``.

    Example, a one-layer linear encoder of single time points::

        register_architecture(
            "linear", lambda c, d, h, normalize: PointwiseMLPEncoder(c, d, h, hidden_layers=1, normalize=normalize)
        )

    Raises:
        ValueError: for a name that is not a non-empty string, a builder that
            is not callable, or a name already taken (unless ``replace``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(
            f"builder must be callable as builder(in_channels, output_dim, hidden_dim, normalize=...), got {builder!r}"
        )
    if normalize not in (None, True, False):
        raise ValueError(f"normalize must be None, True or False, got {normalize!r}")
    if name in ARCHITECTURES and not replace:
        raise ValueError(f"name {name!r} is already registered; pass replace=True to replace it")
    ARCHITECTURES[name] = Architecture(builder, normalize, bool(listed))


def supported_model_architectures(pattern: str = "*") -> list[str]:
    """The listed architecture names matching the shell-style ``pattern`` (CEBRA's first, in CEBRA's order)."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, got {pattern!r}")
    return [name for name, entry in ARCHITECTURES.items() if entry.listed and fnmatch.fnmatchcase(name, pattern)]


def make_architecture(
    name: str, in_channels: int, output_dim: int, hidden_dim: int = 32, normalize: bool = True
) -> TimeSeriesEncoder:
    """Build architecture ``name``; ``normalize`` applies where the name leaves it open.

    Returns an encoder mapping windows ``(N, in_channels, receptive_field) -> (N, output_dim)``.

    Raises:
        ValueError: for an unknown name (naming the choices), or a builder that
            returns no :class:`TimeSeriesEncoder`.
    """
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(
            f"model_architecture must be one of {supported_model_architectures()} "
            f"(or a registered name), got {name!r}"
        )
    entry = ARCHITECTURES[name]
    fixed = normalize if entry.normalize is None else entry.normalize
    encoder = entry.builder(in_channels, output_dim, hidden_dim, normalize=fixed)
    if not isinstance(encoder, TimeSeriesEncoder):
        raise ValueError(
            f"model_architecture {name!r} built a {type(encoder).__name__}, expected a TimeSeriesEncoder "
            "(with receptive_field, left_context, right_context and embed_sequence)"
        )
    return encoder


_mlp = partial(PointwiseMLPEncoder, hidden_layers=3)
_dropout = partial(DropoutConvolutionalEncoder, residual_blocks=16)

for _name, _builder, _normalize in (
    ("offset10-model", TIME_SERIES_ENCODERS["offset10"], True),
    ("offset10-model-mse", TIME_SERIES_ENCODERS["offset10"], False),
    ("offset5-model", TIME_SERIES_ENCODERS["offset5"], True),
    ("offset1-model-mse", _mlp, False),
    ("offset1-model", _mlp, True),
    ("offset36-model", TIME_SERIES_ENCODERS["offset36"], True),
    ("offset36-model-dropout", _dropout, True),
    ("offset36-model-more-dropout", partial(_dropout, dropout_in_blocks=True), True),
):
    register_architecture(_name, _builder, normalize=_normalize)
for _name, _builder in TIME_SERIES_ENCODERS.items():
    register_architecture(_name, _builder)
register_architecture(
    "offset20-model-4x-subsample",
    partial(SubsamplingEncoder, residual_blocks=1, last_kernel=2),
    normalize=True,
    listed=False,
)
register_architecture(
    "offset40-model-4x-subsample",
    partial(SubsamplingEncoder, residual_blocks=3, last_kernel=3),
    normalize=True,
    listed=False,
)
