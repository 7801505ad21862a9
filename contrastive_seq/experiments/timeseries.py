"""The neural time-series domain (CEBRA-style): recordings, window views, offset encoders, CEBRA and ``decoding``.

``contrastive-seq train configs/cebra_place_cells.yaml`` trains on the first
part of the synthetic place-cell recording, then kNN-decodes position and
run direction on the held-out last part from the trained embedding, a random
(untrained) encoder and the raw neural data, and writes ``embedding.png``
(held-out embedding coloured by position in metres and by direction) next
to the run's other files.

Which pairs are drawn follows from ``method.behaviour`` exactly as in the
estimator (:func:`~contrastive_seq.methods.cebra.cebra_sampler`): ``none`` (time
contrastive), ``continuous`` (position and direction as continuous
variables), ``discrete`` (direction), ``mixed`` (direction, then the nearest
position); ``method.hybrid`` adds the time loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from contrastive_seq.config import ConfigError
from contrastive_seq.experiments.sections import (
    DataConfig,
    DataSplit,
    EncoderConfig,
    EvaluationConfig,
    Evaluator,
    ExperimentConfig,
    MethodConfig,
    MissingLabels,
    ViewsConfig,
    as_float_tensor,
    require_section,
)
from contrastive_seq.models.names import TIME_SERIES_ENCODER_NAMES

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from contrastive_seq.data.recording import Recording
    from contrastive_seq.experiments.run import Experiment
    from contrastive_seq.methods.base import Method
    from contrastive_seq.models.timeseries import TimeSeriesEncoder
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views


def _require_positive(section: object, *names: str) -> None:
    """Each named field of ``section`` must be > 0 (a ValueError names the first that is not)."""
    for name in names:
        if not getattr(section, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(section, name)!r}")


@dataclass
class LabelMeaning:
    """What a recording's labels mean, for decoding scores and figures.

    Attributes:
        continuous: ``{name: (column, scale, unit)}``: column of ``continuous`` to
            decode, the factor to its unit, and the unit (``"m"``).
        discrete: name of the ``discrete`` labels (``None``: not decoded).
        classes: a name per discrete value (``("leftward", "rightward")``).
    """

    continuous: dict[str, tuple[int, float, str]] = field(default_factory=dict)
    discrete: str | None = None
    classes: tuple[str, ...] | None = None


@dataclass
class RecordingSplit(DataSplit):
    """Train and held-out :class:`Recording` parts, and what their labels mean."""

    meaning: LabelMeaning = field(default_factory=LabelMeaning)


@DataConfig.register("synthetic_place_cells")
@dataclass
class SyntheticPlaceCellsData(DataConfig):
    """:func:`~contrastive_seq.data.synthetic.synthetic_place_cells`, the last ``test_fraction`` of time held out.

    ``track_length_m`` converts the track's ``[0, 1]`` positions to metres for scores and figures.
    """

    evaluation: ClassVar[str] = "decoding"
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

    def build(self, config: ExperimentConfig) -> RecordingSplit:
        from contrastive_seq.data.synthetic import synthetic_place_cells

        recording = synthetic_place_cells(
            self.num_neurons, self.num_timepoints, seed=self.seed, lap_timepoints=self.lap_timepoints
        )
        train, test = split_in_time(recording, self.test_fraction)
        meaning = LabelMeaning({"position": (0, self.track_length_m, "m")}, "direction", ("leftward", "rightward"))
        return RecordingSplit(train, test, (train.num_channels,), meaning)

    def samples(self, part: Recording) -> torch.Tensor:
        """The neural data ``(T, channels)`` of one part."""
        return part.neural


@DataConfig.register("timeseries_file")
@dataclass
class TimeSeriesFileData(DataConfig):
    """A recording of the user's own (.npy / .npz, CSV / TSV, HDF5), read by
    :func:`~contrastive_seq.data.timeseries_files.load_timeseries` with the names given here.

    ``neural``, ``continuous``, ``discrete`` and ``segments`` name the
    arrays (npz keys, HDF5 datasets, CSV columns); only the labels named are
    read. The last ``test_fraction`` of time is held out, cut at the segment
    boundary nearest to it when ``segments`` is named (whole trials held
    out); windows and time positives never cross a segment boundary.
    Decoding runs after training when labels are named.
    """

    evaluation: ClassVar[str] = "decoding"
    name: str = "timeseries_file"
    path: str = ""
    neural: str | None = None
    continuous: list[str] = field(default_factory=list)
    discrete: str | None = None
    segments: str | None = None
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path must name the recording file (.npz, .npy, .csv, .tsv or .h5)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")

    def read(self, path: str) -> Recording:
        """The recording in ``path`` with this section's names (the whole file, nothing held out)."""
        from contrastive_seq.data.timeseries_files import load_timeseries

        return load_timeseries(path, self.neural, self.continuous or None, self.discrete, self.segments)

    def build(self, config: ExperimentConfig) -> RecordingSplit:
        recording = self.read(self.path)
        train, test = split_in_time(recording, self.test_fraction)
        if len(self.continuous) == recording.num_continuous:
            names = self.continuous
        else:  # a name holds several columns
            names = [f"continuous_{j}" for j in range(recording.num_continuous)]
        meaning = LabelMeaning({name: (j, 1.0, "") for j, name in enumerate(names)}, self.discrete)
        return RecordingSplit(train, test, (train.num_channels,), meaning)

    def samples(self, part: Recording) -> torch.Tensor:
        """The neural data ``(T, channels)`` of one part."""
        return part.neural

    def read_samples(self, path: str) -> torch.Tensor:
        """The neural data ``(T, channels)`` of the whole recording in ``path`` (for ``embed``)."""
        return self.read(path).neural


@DataConfig.register("nwb_file")
@dataclass
class NWBFileData(TimeSeriesFileData):
    """A Neurodata Without Borders file (needs ``pynwb``), read by :func:`~contrastive_seq.data.nwb.load_nwb`.

    ``neural`` is ``units`` (the units table's spike times counted in bins of
    ``bin_width`` seconds) or the name of a TimeSeries (an ElectricalSeries,
    ``Fluorescence/RoiResponseSeries``, ...) whose samples are the bins;
    ``continuous`` names the behaviour series (SpatialSeries / TimeSeries,
    interpolated onto the bins), ``discrete`` a trials-table column. The
    trials are the segments: whole trials are held out (the last
    ``test_fraction`` of time) and no window or positive crosses a trial's
    edge. ``start`` / ``stop`` (seconds) bound the bins. Built, held out and
    embedded as :class:`TimeSeriesFileData`, only :meth:`read` differs.
    """

    # the config key of each argument of the reader, which its errors name (the file's series are listed too)
    reader_arguments: ClassVar[dict[str, str]] = {
        "neural": "data.neural", "behaviour": "data.continuous", "bin_width": "data.bin_width",
        "discrete": "data.discrete", "start": "data.start", "stop": "data.stop",
    }
    name: str = "nwb_file"
    neural: str = "units"
    bin_width: float | None = None
    start: float | None = None
    stop: float | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path must name the .nwb file")
        if self.segments is not None:
            raise ConfigError("data.segments does not apply to nwb_file: the file's trials table gives the segments")
        if self.neural == "units" and not (self.bin_width or 0) > 0:
            raise ConfigError(
                f"data.bin_width must be a positive number of seconds with neural: units, got {self.bin_width!r}"
            )
        super().__post_init__()

    def read(self, path: str) -> Recording:
        """The recording in the NWB file ``path`` with this section's names (the whole file, nothing held out)."""
        from contrastive_seq.data.nwb import load_nwb

        return load_nwb(path, self.neural, self.continuous, self.bin_width, self.discrete, self.start, self.stop,
                        argument_names=self.reader_arguments)


def split_in_time(recording: Recording, test_fraction: float) -> tuple[Recording, Recording]:
    """The first ``1 - test_fraction`` of ``recording``'s time points and the rest, as two in-memory recordings.

    With segments (trials), the cut moves to the segment boundary nearest to
    it, so whole segments are held out and none is cut in two.
    """
    from contrastive_seq.data.recording import Recording

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    cut = round(len(recording) * (1 - test_fraction))
    if recording.segments is not None:
        boundaries = recording.segment_bounds[0][1:]
        if boundaries.numel() == 0:
            raise ValueError(
                f"recording {recording.name!r} holds one segment: with segments, test_fraction holds out whole "
                "segments, so at least two are needed"
            )
        cut = int(boundaries[(boundaries - cut).abs().argmin()])
    if not 0 < cut < len(recording):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty part of the {len(recording)} time points")

    def part(rows: slice, name: str) -> Recording:
        continuous = None if recording.continuous is None else recording.continuous[rows]
        discrete = None if recording.discrete is None else recording.discrete[rows]
        segments = None if recording.segments is None else recording.segments[rows]
        neural = recording.read_neural(rows.start, rows.stop)
        return Recording(neural, continuous, discrete, name=name, segments=segments)

    return part(slice(0, cut), f"{recording.name}_train"), part(slice(cut, len(recording)), f"{recording.name}_test")


def with_behaviour(recording: Recording, behaviour: str) -> Recording:
    """The labels a recording trains with: ``none``, ``continuous`` (every continuous variable),
    ``discrete`` or ``mixed`` (discrete, then the first continuous variable); segments are kept.

    Raises:
        ConfigError naming ``method.behaviour`` when the recording lacks the labels it needs.
    """
    from contrastive_seq.data.recording import Recording

    needs = {"continuous": ("continuous",), "discrete": ("discrete",), "mixed": ("continuous", "discrete")}
    missing = [kind for kind in needs.get(behaviour, ()) if getattr(recording, kind) is None]
    if missing:
        raise ConfigError(
            f"method.behaviour={behaviour!r} needs {' and '.join(missing)} labels, but the data has none "
            f"(name them in the data section, e.g. data.{missing[0]}, or set method.behaviour=none)"
        )
    continuous = None
    if behaviour in ("continuous", "mixed"):
        continuous = recording.continuous if behaviour == "continuous" else recording.continuous[:, :1]
    discrete = recording.discrete if behaviour in ("discrete", "mixed") else None
    return Recording(recording.neural, continuous, discrete, name=recording.name, segments=recording.segments)


@ViewsConfig.register("windows")
@dataclass
class WindowViewsConfig(ViewsConfig):
    """The window of the encoder's receptive field around each sampled time point (no options: the encoder sets it)."""

    name: str = "windows"

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from contrastive_seq.views.windows import WindowViews

        return WindowViews.for_encoder(method.encoder)


@EncoderConfig.register("offset")
@dataclass
class OffsetEncoderConfig(EncoderConfig):
    """A time-series encoder of :data:`~contrastive_seq.models.timeseries.TIME_SERIES_ENCODERS` (``offset10``, ...).

    Its output is normalised when ``method.distance`` is ``cosine``.
    """

    name: str = "offset"
    architecture: str = "offset10"
    hidden_dim: int = 32
    output_dim: int = 3

    def __post_init__(self) -> None:
        if self.architecture not in TIME_SERIES_ENCODER_NAMES:
            raise ValueError(f"architecture must be one of {sorted(TIME_SERIES_ENCODER_NAMES)}, got {self.architecture!r}")
        _require_positive(self, "hidden_dim", "output_dim")

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        from contrastive_seq.models.timeseries import make_time_series_encoder

        require_section(config, "method", CEBRAMethodConfig, needed_by="encoder 'offset'")
        if len(sample_shape) != 1:
            raise ConfigError(f"encoder 'offset' needs time points of shape (channels,), got {sample_shape}")
        return make_time_series_encoder(
            self.architecture,
            sample_shape[0],
            self.output_dim,
            hidden_dim=self.hidden_dim,
            normalize=config.method.distance == "cosine",
        )

    def embed(self, encoder: nn.Module, inputs: Any, batch_size: int) -> Iterator[np.ndarray]:
        """Every time point of one recording ``(T, channels)``, ``batch_size`` time points at a time.

        Each chunk is embedded with its receptive field's margin of real
        neighbours, so the rows equal one pass over the whole recording.
        """
        import torch

        left, right = encoder.left_context, encoder.right_context
        device = next(encoder.parameters()).device
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                stop = min(start + batch_size, len(inputs))
                first, last = max(0, start - left), min(len(inputs), stop + right)
                window = as_float_tensor(inputs[first:last]).to(device)
                rows = encoder.embed_sequence(window)[start - first : start - first + stop - start]
                yield rows.float().cpu().numpy()


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.data.recording import Recording
        from contrastive_seq.methods.cebra import cebra_loss, cebra_sampler
        from contrastive_seq.methods.cebra import CEBRA

        if not isinstance(train, Recording):
            raise ConfigError(f"method 'cebra' needs a recording as data, got {type(train).__name__}")
        if len(train) < encoder.receptive_field + self.time_offsets:
            raise ConfigError(
                f"data: the training part has {len(train)} time points, fewer than the receptive field "
                f"{encoder.receptive_field} plus method.time_offsets={self.time_offsets}"
            )
        loss = cebra_loss(self.distance, self.temperature, self.temperature_mode, self.min_temperature)
        sampler = cebra_sampler(
            [with_behaviour(train, self.behaviour)],
            conditional=self.conditional,
            delta=self.delta,
            time_offsets=self.time_offsets,
            hybrid=self.hybrid,
            left_context=encoder.left_context,
            right_context=encoder.right_context,
            num_negatives=self.num_negatives,
        )
        return CEBRA(encoder, loss, hybrid=self.hybrid), sampler


@EvaluationConfig.register("decoding")
@dataclass
class DecodingEvaluation(EvaluationConfig):
    """kNN decoding of the held-out part's labels (R² and median error in the labels' unit; accuracy).

    Rows: the raw neural data, the random (untrained) encoder and the trained one.
    """

    name: str = "decoding"
    knn_k: int = 10

    def evaluator(self, experiment: Experiment) -> Evaluator:
        split = experiment.data
        if not isinstance(split, RecordingSplit) or split.test is None:
            raise MissingLabels("evaluation 'decoding' needs a recording with a held-out part")
        meaning = split.meaning
        if not meaning.continuous and meaning.discrete is None:
            raise MissingLabels("evaluation 'decoding' needs labels (continuous or discrete) on the recording")
        return DecodingEvaluator(self.knn_k, split, experiment.config)


def embed_recording(encoder: TimeSeriesEncoder, recording: Recording) -> np.ndarray:
    """The embedding ``(T, D)`` of every time point of an in-memory recording, on the CPU."""
    import torch

    encoder = encoder.to("cpu").eval()
    with torch.no_grad():
        return encoder.embed_sequence(recording.neural).numpy()


class DecodingEvaluator(Evaluator):
    """:class:`DecodingEvaluation` of one recording split."""

    def __init__(self, knn_k: int, split: RecordingSplit, config: ExperimentConfig):
        self.k, self.train, self.test, self.meaning = knn_k, split.train, split.test, split.meaning
        self.metric = "cosine" if getattr(config.method, "distance", "cosine") == "cosine" else "euclidean"
        self.trained_row = f"{config.method.name} (trained)"

    def scores(self, train_x: np.ndarray, test_x: np.ndarray, metric: str) -> dict[str, float]:
        """Decoding scores of embeddings ``(T_train, D)`` and ``(T_test, D)``."""
        from contrastive_seq.evaluation.decoding import knn_decode

        scores = {}
        for name, (column, scale, unit) in self.meaning.continuous.items():
            target = (self.train.continuous[:, column], self.test.continuous[:, column])
            decoded = knn_decode(train_x, target[0], test_x, target[1], self.k, metric)
            scores[f"{name}_r2"] = decoded["r2"]
            error_name = f"{name}_median_error_{unit}" if unit else f"{name}_median_error"
            scores[error_name] = decoded["median_absolute_error"] * scale
        if self.meaning.discrete is not None:
            decoded = knn_decode(train_x, self.train.discrete, test_x, self.test.discrete, self.k, metric)
            scores[f"{self.meaning.discrete}_accuracy"] = decoded["accuracy"]
        return scores

    def results(self, trained: Method, untrained: Method) -> dict[str, dict[str, float]]:
        def embedded(method: Method) -> dict[str, float]:
            encoder = method.encoder
            return self.scores(embed_recording(encoder, self.train), embed_recording(encoder, self.test), self.metric)

        return {
            "raw neural": self.scores(self.train.neural.numpy(), self.test.neural.numpy(), "euclidean"),
            "random encoder": embedded(untrained),
            self.trained_row: embedded(trained),
        }

    def figures(self, trained: Method, output: Path) -> list[Path]:
        """``embedding.png``: the held-out embedding coloured by each decoded label, in its unit or class names."""
        from contrastive_seq.plotting import plot_embedding_panels

        embedding = embed_recording(trained.encoder, self.test)
        panels = [
            (self.test.continuous[:, column] * scale, f"{name} ({unit})" if unit else name, None)
            for name, (column, scale, unit) in self.meaning.continuous.items()
        ]
        if self.meaning.discrete is not None:
            panels.append((self.test.discrete, self.meaning.discrete, self.meaning.classes))
        return [plot_embedding_panels(embedding, panels, output / "embedding.png", "held-out embedding")]
