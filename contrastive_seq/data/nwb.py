"""Neurodata Without Borders (NWB) files as recordings: neural activity, behaviour and trials on one time base.

Needs ``pynwb`` (``pip install contrastive-seq[nwb]``). A file downloaded from
DANDI reads offline once it is local.

- **Neural**: ``neural="units"`` bins the units table's spike times into bins of
  ``bin_width`` seconds (spike counts, one channel per unit); any other name
  picks a ``TimeSeries`` of the file (an ``ElectricalSeries``, a
  ``RoiResponseSeries`` of a ``Fluorescence`` / ``DfOverF`` container, ...),
  whose own samples are the bins.
- **Behaviour**: ``behaviour`` names ``SpatialSeries`` / ``TimeSeries``
  (e.g. a position inside a ``Position`` container); each is linearly
  interpolated onto the bin centres and their columns are concatenated into
  the continuous labels ``(time, k)``.
- **Trials**: the trials table gives a per-bin trial index (the row of the
  trial whose ``[start_time, stop_time)`` holds the bin centre, ``-1`` between
  trials), returned alongside the recording by :func:`read_nwb`; ``discrete``
  names a trials column whose value per bin becomes the discrete labels (codes
  ``0 .. n - 1`` of its sorted distinct values, ``-1`` between trials).

A series is named by its name (``"position"``) or, where several share a
name, by the end of its path in the file (``"Fluorescence/RoiResponseSeries"``).
Bins cover the time where the neural data and every behaviour series overlap,
narrowed by ``start`` / ``stop`` (seconds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contrastive_seq.data.recording import Recording


@dataclass
class NWBSession:
    """What :func:`read_nwb` returns.

    Attributes:
        recording: the :class:`Recording` (neural, continuous behaviour, discrete labels).
        bin_times: ``(time,)`` float64 bin centres, in seconds.
        trial: ``(time,)`` int64 trial index of each bin (row of the trials table), ``-1`` outside
            trials or without a trials table: the recording's segments.
    """

    recording: Recording
    bin_times: np.ndarray
    trial: np.ndarray


def _series_path(obj: object) -> str:
    parts = []
    while obj is not None:
        parts.append(obj.name)
        obj = obj.parent
    return "/".join(reversed(parts[:-1]))  # without the file's root


def _find_series(nwbfile: object, name: str, argument: str) -> object:
    from pynwb import TimeSeries

    series = [obj for obj in nwbfile.objects.values() if isinstance(obj, TimeSeries)]
    matches = [obj for obj in series if _series_path(obj) == name or _series_path(obj).endswith("/" + name)]
    if len(matches) == 1:
        return matches[0]
    paths = sorted(_series_path(obj) for obj in series)
    if not matches:
        raise ValueError(f"{argument}={name!r} names no time series of the file; it holds {paths}")
    found = sorted(_series_path(obj) for obj in matches)
    raise ValueError(f"{argument}={name!r} names several time series {found}: give more of the path")


def _series_values(series: object, argument: str) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps (n,), values (n, k))`` of a TimeSeries, as float64."""
    values = np.asarray(series.data[:], dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"{argument}: series {series.name!r} must hold (time, k) samples, got shape {values.shape}")
    times = np.asarray(series.get_timestamps(), dtype=np.float64)
    if len(times) != len(values):
        raise ValueError(f"{argument}: series {series.name!r} has {len(values)} samples but {len(times)} timestamps")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{argument}: series {series.name!r} must have increasing timestamps")
    return times, values


def _spike_trains(nwbfile: object, bin_width: float, argument: str) -> tuple[list[np.ndarray], float, float]:
    """Spike times of every unit, the first spike and the last spike plus one bin: ``(trains, first, last)``."""
    if nwbfile.units is None or len(nwbfile.units) == 0:
        raise ValueError(f"{argument}='units' needs a units table with at least one unit; the file has none")
    trains = [np.asarray(nwbfile.units.get_unit_spike_times(i), dtype=np.float64) for i in range(len(nwbfile.units))]
    spikes = np.concatenate(trains)
    if spikes.size == 0:
        raise ValueError(f"{argument}='units': the units table holds no spike times")
    return trains, float(spikes.min()), float(spikes.max()) + bin_width


def _time_range(
    names: Mapping[str, str], first: float, last: float, start: float | None, stop: float | None
) -> tuple[float, float]:
    low = first if start is None else max(first, float(start))
    high = last if stop is None else min(last, float(stop))
    if not high > low:
        raise ValueError(f"{names['neural']}: no time left between {low} and {high} s "
                         f"({names['start']}={start}, {names['stop']}={stop})")
    return low, high


def _trial_index(nwbfile: object, bin_times: np.ndarray) -> np.ndarray:
    trial = np.full(len(bin_times), -1, dtype=np.int64)
    if nwbfile.trials is None:
        return trial
    starts = np.asarray(nwbfile.trials["start_time"][:], dtype=np.float64)
    stops = np.asarray(nwbfile.trials["stop_time"][:], dtype=np.float64)
    for row, (begin, end) in enumerate(zip(starts, stops)):
        trial[(bin_times >= begin) & (bin_times < end)] = row
    return trial


def _trial_labels(nwbfile: object, column: str, trial: np.ndarray, argument: str) -> np.ndarray:
    if nwbfile.trials is None:
        raise ValueError(f"{argument}={column!r} names a trials column, but the file has no trials table")
    if column not in nwbfile.trials.colnames:
        raise ValueError(f"{argument}={column!r} is not a trials column; the columns are {list(nwbfile.trials.colnames)}")
    values = np.asarray(nwbfile.trials[column][:])
    if values.ndim != 1:
        raise ValueError(f"{argument}={column!r} must be a column of one value per trial, got shape {values.shape}")
    _, codes = np.unique(values, return_inverse=True)
    return np.where(trial >= 0, codes[np.maximum(trial, 0)], -1).astype(np.int64)


ARGUMENTS = ("neural", "behaviour", "bin_width", "discrete", "start", "stop")


def _argument_names(argument_names: Mapping[str, str] | None) -> dict[str, str]:
    """What errors call each argument of :func:`read_nwb`: its own name unless ``argument_names`` says otherwise."""
    unknown = sorted(set(argument_names or {}) - set(ARGUMENTS))
    if unknown:
        raise ValueError(f"argument_names: {unknown} are not arguments of read_nwb; they are {list(ARGUMENTS)}")
    return {name: name for name in ARGUMENTS} | dict(argument_names or {})


def read_nwb(
    path: str | os.PathLike,
    neural: str = "units",
    behaviour: str | Sequence[str] = (),
    bin_width: float | None = None,
    discrete: str | None = None,
    start: float | None = None,
    stop: float | None = None,
    argument_names: Mapping[str, str] | None = None,
) -> NWBSession:
    """Read an NWB file into a :class:`Recording` plus its bin times and per-bin trial index.

    Args:
        path: the ``.nwb`` file (HDF5).
        neural: ``"units"`` (binned spike counts) or the name of a TimeSeries (see the module docstring).
        behaviour: names of SpatialSeries / TimeSeries to interpolate onto the bins (continuous labels).
        bin_width: seconds per bin, required with ``neural="units"`` and refused otherwise.
        discrete: a trials-table column to use as discrete labels.
        start, stop: seconds that bound the bins.
        argument_names: what errors call the arguments above, where the caller knows them by
            other names (a config: ``{"behaviour": "data.continuous"}``); default: their own names.

    Returns:
        :class:`NWBSession` with ``recording.neural (time, channels)`` float32.

    Raises:
        ImportError: without pynwb. FileNotFoundError: no such file.
        ValueError: naming the argument: an unknown series or column, a missing units table,
            a bad ``bin_width``, or no time left in range.
    """
    names = _argument_names(argument_names)
    try:
        from pynwb import NWBHDF5IO
    except ImportError as error:
        raise ImportError("reading NWB files needs pynwb: pip install 'contrastive-seq[nwb]'") from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no NWB file at {os.fspath(path)!r}")
    if not isinstance(neural, str):
        raise TypeError(f"{names['neural']} must be 'units' or a series name, got {type(neural).__name__}")
    series_names = [behaviour] if isinstance(behaviour, str) else list(behaviour)
    if neural == "units":
        if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float)) or not bin_width > 0:
            raise ValueError(f"{names['bin_width']} must be a positive number of seconds with "
                             f"{names['neural']}='units', got {bin_width!r}")
    elif bin_width is not None:
        raise ValueError(f"{names['bin_width']} applies to {names['neural']}='units' only; "
                         f"the series {neural!r} keeps its own sampling")
    with NWBHDF5IO(os.fspath(path), "r") as io:
        nwbfile = io.read()
        behaviours = [_series_values(_find_series(nwbfile, name, names["behaviour"]), names["behaviour"])
                      for name in series_names]
        first = max([times[0] for times, _ in behaviours], default=-np.inf)
        last = min([times[-1] for times, _ in behaviours], default=np.inf)
        if neural == "units":
            trains, spikes_first, spikes_last = _spike_trains(nwbfile, bin_width, names["neural"])
            low, high = _time_range(names, max(first, spikes_first), min(last, spikes_last), start, stop)
            bins = int(np.floor((high - low) / bin_width + 1e-9))  # a bin that ends on ``high`` up to rounding counts
            edges = low + bin_width * np.arange(bins + 1)
            if len(edges) < 2:
                raise ValueError(f"{names['bin_width']}={bin_width} s is longer than the {high - low} s in range")
            counts = np.stack([np.histogram(train, edges)[0] for train in trains], 1)
            bin_times, values = (edges[:-1] + edges[1:]) / 2, counts.astype(np.float32)
        else:
            times, samples = _series_values(_find_series(nwbfile, neural, names["neural"]), names["neural"])
            low, high = _time_range(names, max(first, times[0]), min(last, times[-1]), start, stop)
            keep = (times >= low) & (times <= high)
            if keep.sum() < 1:
                raise ValueError(f"{names['neural']}: series {neural!r} has no sample between {low} and {high} s")
            bin_times, values = times[keep], samples[keep].astype(np.float32)
        continuous = None
        if behaviours:
            columns = [np.interp(bin_times, times, column) for times, samples in behaviours for column in samples.T]
            continuous = np.stack(columns, 1).astype(np.float32)
        trial = _trial_index(nwbfile, bin_times)
        nwbfile_has_trials = nwbfile.trials is not None
        labels = None if discrete is None else _trial_labels(nwbfile, discrete, trial, names["discrete"])
        name = nwbfile.session_id or "session0"
    segments = trial if nwbfile_has_trials else None  # no window or positive crosses a trial boundary
    recording = Recording(values, continuous, labels, name=name.replace("/", "_"), segments=segments)
    return NWBSession(recording, bin_times, trial)


def load_nwb(
    path: str | os.PathLike,
    neural: str = "units",
    behaviour: str | Sequence[str] = (),
    bin_width: float | None = None,
    discrete: str | None = None,
    start: float | None = None,
    stop: float | None = None,
    argument_names: Mapping[str, str] | None = None,
) -> Recording:
    """The :class:`Recording` of :func:`read_nwb` (same arguments), trials as its segments; bin times are dropped."""
    return read_nwb(path, neural, behaviour, bin_width, discrete, start, stop, argument_names).recording
