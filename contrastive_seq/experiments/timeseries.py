"""Neural time series (CEBRA-style): the synthetic place-cell data, window views, offset encoders and the run.

``contrastive-seq train configs/cebra_place_cells.yaml`` reaches
:func:`run_timeseries_experiment` through
:func:`~contrastive_seq.experiments.run.experiment_runner`: it trains on the
first part of the recording, then kNN-decodes position and run direction on
the held-out last part of the recording from the trained embedding, a
random (untrained) encoder and the raw neural data, prints the table and
writes ``results.json``, ``embedding.png`` (held-out embedding coloured by
position and by direction) and ``loss.png`` to ``train.output_dir``.

Which pairs are drawn follows from ``method.behaviour`` exactly as in the
estimator (:func:`~contrastive_seq.estimator.cebra_sampler`): ``none`` (time
contrastive), ``continuous`` (position and direction as continuous
variables), ``discrete`` (direction), ``mixed`` (direction, then the nearest
position); ``method.hybrid`` adds the time loss. Of the ``evaluation``
section only ``knn_k`` applies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import torch

from contrastive_seq import distributed
from contrastive_seq.data.recording import Recording
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.methods.cebra import DISTANCES, cebra_loss, cebra_sampler
from contrastive_seq.evaluation.decoding import knn_decode
from contrastive_seq.experiments.run import experiment_runner, report_results
from contrastive_seq.experiments.sections import (
    DataConfig,
    EncoderConfig,
    ExperimentConfig,
    MethodConfig,
    ViewsConfig,
)
from contrastive_seq.methods.cebra import CEBRA
from contrastive_seq.models.timeseries import (
    TIME_SERIES_ENCODERS,
    TimeSeriesEncoder,
    make_time_series_encoder,
)
from contrastive_seq.plotting import plot_embedding, plot_loss
from contrastive_seq.training.trainer import Trainer
from contrastive_seq.views.windows import WindowViews


def _require_positive(section: object, *names: str) -> None:
    """Each named field of ``section`` must be > 0 (a ValueError names the first that is not)."""
    for name in names:
        if not getattr(section, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(section, name)!r}")


@DataConfig.register("synthetic_place_cells")
@dataclass
class SyntheticPlaceCellsData(DataConfig):
    """:func:`~contrastive_seq.data.synthetic.synthetic_place_cells`, the last ``test_fraction`` of time held out.

    ``track_length_m`` converts the track's ``[0, 1]`` positions to metres for the reported error.
    """

    name: str = "synthetic_place_cells"
    num_neurons: int = 40
    num_timepoints: int = 10_000
    lap_timepoints: float = 200.0
    seed: int = 0
    test_fraction: float = 0.2
    track_length_m: float = 1.6

    def __post_init__(self) -> None:
        _require_positive(self, "num_neurons", "num_timepoints", "lap_timepoints")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not self.track_length_m > 0:
            raise ValueError(f"track_length_m must be > 0, got {self.track_length_m}")


@ViewsConfig.register("windows")
@dataclass
class WindowViewsConfig(ViewsConfig):
    """The window of the encoder's receptive field around each sampled time point (no options: the encoder sets it)."""

    name: str = "windows"


@EncoderConfig.register("offset")
@dataclass
class OffsetEncoderConfig(EncoderConfig):
    """A time-series encoder of :data:`~contrastive_seq.models.timeseries.TIME_SERIES_ENCODERS` (``offset10``, ...)."""

    name: str = "offset"
    architecture: str = "offset10"
    hidden_dim: int = 32
    output_dim: int = 3

    def __post_init__(self) -> None:
        if self.architecture not in TIME_SERIES_ENCODERS:
            raise ValueError(f"architecture must be one of {sorted(TIME_SERIES_ENCODERS)}, got {self.architecture!r}")
        _require_positive(self, "hidden_dim", "output_dim")


@MethodConfig.register("cebra")
@dataclass
class CEBRAMethodConfig(MethodConfig):
    """CEBRA: what to pair (``behaviour``, ``conditional``, ``time_offsets``, ``delta``, ``hybrid``) and the loss.

    Parameters mean what the estimator's of the same name mean
    (:class:`~contrastive_seq.estimator.ContrastiveEmbedding`).
    """

    name: str = "cebra"
    behaviour: Literal["none", "continuous", "discrete", "mixed"] = "continuous"
    conditional: Literal["time_delta", "delta"] = "time_delta"
    time_offsets: int = 10
    delta: float = 0.1
    hybrid: bool = False
    distance: Literal["cosine", "euclidean", "dot"] = "cosine"
    temperature: float = 1.0
    temperature_mode: Literal["constant", "auto"] = "constant"
    min_temperature: float = 0.1
    num_negatives: int | None = None

    def __post_init__(self) -> None:
        _require_positive(self, "time_offsets", "delta", "temperature", "min_temperature")
        if self.num_negatives is not None:
            _require_positive(self, "num_negatives")


def split_in_time(recording: Recording, test_fraction: float) -> tuple[Recording, Recording]:
    """The first ``1 - test_fraction`` of ``recording``'s time points and the rest, as two in-memory recordings."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    cut = round(len(recording) * (1 - test_fraction))
    if not 0 < cut < len(recording):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty part of the {len(recording)} time points")

    def part(rows: slice, name: str) -> Recording:
        continuous = None if recording.continuous is None else recording.continuous[rows]
        discrete = None if recording.discrete is None else recording.discrete[rows]
        return Recording(recording.read_neural(rows.start, rows.stop), continuous, discrete, name=name)

    return part(slice(0, cut), f"{recording.name}_train"), part(slice(cut, len(recording)), f"{recording.name}_test")


def with_behaviour(recording: Recording, behaviour: str) -> Recording:
    """The labels a place-cell recording trains with: ``none``, ``continuous`` (position, direction),
    ``discrete`` (direction) or ``mixed`` (direction and position)."""
    continuous = {"none": None, "discrete": None, "mixed": recording.continuous[:, :1]}.get(
        behaviour, recording.continuous
    )
    discrete = recording.discrete if behaviour in ("discrete", "mixed") else None
    return Recording(recording.neural, continuous, discrete, name=recording.name)


def place_decoding_scores(
    train_embedding: np.ndarray,
    train: Recording,
    test_embedding: np.ndarray,
    test: Recording,
    k: int,
    metric: str,
    track_length_m: float,
) -> dict[str, float]:
    """kNN decoding of position (R², median absolute error in metres) and direction (accuracy) on held-out time.

    Embeddings are ``(T_train, D)`` and ``(T_test, D)``; the recordings carry
    ``continuous[:, 0]`` = position in ``[0, 1]`` and ``discrete`` = direction.
    """
    position = knn_decode(train_embedding, train.continuous[:, 0], test_embedding, test.continuous[:, 0], k, metric)
    direction = knn_decode(train_embedding, train.discrete, test_embedding, test.discrete, k, metric)
    return {
        "position_r2": position["r2"],
        "position_median_error_m": position["median_absolute_error"] * track_length_m,
        "direction_accuracy": direction["accuracy"],
    }


def embed(encoder: TimeSeriesEncoder, recording: Recording) -> np.ndarray:
    """The embedding ``(T, D)`` of every time point of an in-memory recording, on the CPU."""
    encoder = encoder.to("cpu").eval()
    with torch.no_grad():
        return encoder.embed_sequence(recording.neural).numpy()


@dataclass
class TimeSeriesExperiment:
    """The parts :func:`run_timeseries_experiment` trains and evaluates."""

    method: CEBRA
    sampler: object
    views: WindowViews
    train: Recording
    test: Recording


def build_timeseries_experiment(config: ExperimentConfig) -> TimeSeriesExperiment:
    """Data split in time, offset encoder, CEBRA with the loss and the sampler its behaviour labels call for."""
    data, encoder_config, method_config = config.data, config.encoder, config.method
    recording = synthetic_place_cells(
        data.num_neurons, data.num_timepoints, seed=data.seed, lap_timepoints=data.lap_timepoints
    )
    train, test = split_in_time(recording, data.test_fraction)
    encoder = make_time_series_encoder(
        encoder_config.architecture,
        train.num_channels,
        encoder_config.output_dim,
        hidden_dim=encoder_config.hidden_dim,
        normalize=DISTANCES[method_config.distance][1],
    )
    if len(train) < encoder.receptive_field + method_config.time_offsets:
        raise ValueError(
            f"data: the training part has {len(train)} time points, fewer than the receptive field "
            f"{encoder.receptive_field} plus method.time_offsets={method_config.time_offsets}"
        )
    loss = cebra_loss(
        method_config.distance, method_config.temperature, method_config.temperature_mode, method_config.min_temperature
    )
    sampler = cebra_sampler(
        [with_behaviour(train, method_config.behaviour)],
        conditional=method_config.conditional,
        delta=method_config.delta,
        time_offsets=method_config.time_offsets,
        hybrid=method_config.hybrid,
        left_context=encoder.left_context,
        right_context=encoder.right_context,
        num_negatives=method_config.num_negatives,
    )
    method = CEBRA(encoder, loss, hybrid=method_config.hybrid)
    return TimeSeriesExperiment(method, sampler, WindowViews.for_encoder(encoder), train, test)


def save_figures(output: Path, embedding: np.ndarray, test: Recording, history: list[dict]) -> None:
    """``embedding.png`` (held-out embedding by position and by direction) and ``loss.png`` in ``output``."""
    dims = (0, 1, 2) if embedding.shape[1] >= 3 else (0, 1)
    projection = "3d" if len(dims) == 3 else None
    figure = plt.figure(figsize=(11, 4.5))
    for column, (labels, name) in enumerate(((test.continuous[:, 0], "position"), (test.discrete, "direction"))):
        ax = figure.add_subplot(1, 2, column + 1, projection=projection)
        plot_embedding(embedding, labels, dims=dims, ax=ax, label_name=name)
        ax.set_title(f"held-out embedding, coloured by {name}")
    figure.tight_layout()
    figure.savefig(output / "embedding.png", dpi=120)
    plt.close(figure)
    ax = plot_loss(history)
    ax.set_title("training loss (InfoNCE)")
    ax.figure.savefig(output / "loss.png", dpi=120)
    plt.close(ax.figure)


@experiment_runner.register
def _(method_config: CEBRAMethodConfig):
    return run_timeseries_experiment


def run_timeseries_experiment(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Train CEBRA on the first part of the recording; decode held-out position and direction against baselines.

    Returns ``{representation: {"position_r2", "position_median_error_m", "direction_accuracy"}}``
    for ``raw neural``, ``random encoder`` and ``cebra (trained)``; on rank 0
    prints the table and writes ``results.json``, ``embedding.png`` and
    ``loss.png`` to ``train.output_dir`` (when set).
    """
    torch.manual_seed(config.train.seed)
    experiment = build_timeseries_experiment(config)
    untrained = copy.deepcopy(experiment.method.encoder)
    trainer = Trainer(
        experiment.method,
        config.train,
        experiment.train,
        experiment.sampler,
        experiment.views,
        run_settings=config.run_settings(),
    )
    trainer.fit()
    if distributed.rank() != 0:
        return {}
    train, test = experiment.train, experiment.test
    metric = "cosine" if DISTANCES[config.method.distance][1] else "euclidean"
    k, track = config.evaluation.knn_k, config.data.track_length_m
    trained_test = embed(experiment.method.encoder, test)
    results = {
        "raw neural": place_decoding_scores(
            train.neural.numpy(), train, test.neural.numpy(), test, k, "euclidean", track
        ),
        "random encoder": place_decoding_scores(embed(untrained, train), train, embed(untrained, test), test, k, metric, track),
        f"{config.method.name} (trained)": place_decoding_scores(
            embed(experiment.method.encoder, train), train, trained_test, test, k, metric, track
        ),
    }
    output = report_results(config, results)
    if output is not None:
        save_figures(output, trained_test, test, trainer.history)
    return results
