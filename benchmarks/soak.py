"""Soak test: a long run of the time-series estimator on a long recording, watching resident memory.

Fits :class:`~contrastive_seq.ContrastiveEmbedding` (CEBRA-style, continuous
behaviour labels) for ``--steps`` optimiser steps on
:func:`~contrastive_seq.data.synthetic.synthetic_place_cells` with
``--timepoints`` time bins, on the CPU. A background thread reads this
process's resident memory (``VmRSS``) and its peak so far (``VmHWM``) from
``/proc/self/status`` every ``--interval`` seconds. The run's time is cut
into windows of ``--window`` (a fraction of the whole, 5% by default); the
*start* is the second window (the first holds the one-off peak of checking
and copying the data and building the sampler's trees), the *end* is the
last. Memory is steady when the peak resident memory of the end window is
within 5% of the peak of the start window: anything that grows with the
step count (histories, caches, leaked tensors) shows up as the difference.
The process's overall peak (``VmHWM``) is reported too.

The figures are printed as a table and, with ``--output``, written as JSON.
This is a benchmark, not a timed test: the pass/fail is on memory only.

Run: ``python benchmarks/soak.py`` (20,000 steps on 10^6 points; 26 minutes on
one shared CPU core) or shorter, e.g. ``--steps 2000 --timepoints 100000``.
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.synthetic import synthetic_place_cells

ALLOWED_GROWTH = 0.05


def resident_kib() -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of this process in KiB: resident memory now and its peak so far."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


class MemoryWatch:
    """Samples :func:`resident_kib` every ``interval`` seconds in a daemon thread, with timestamps."""

    def __init__(self, interval: float):
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, VmRSS, VmHWM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def __enter__(self) -> MemoryWatch:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record()

    def _record(self) -> None:
        self.samples.append((time.perf_counter() - self._start, *resident_kib()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()


@dataclass
class SoakResult:
    steps: int
    timepoints: int
    channels: int
    batch_size: int
    seconds: float
    peak_rss_start_mib: float
    peak_rss_end_mib: float
    peak_growth: float
    process_peak_mib: float
    first_loss: float
    last_loss: float
    steady: bool


def window_peak(samples: list[tuple[float, int, int]], low: float, high: float) -> int:
    """The largest VmRSS (KiB) among ``samples`` taken in ``(low, high]`` seconds."""
    inside = [rss for seconds, rss, _ in samples if low < seconds <= high]
    if not inside:
        raise ValueError(f"no memory sample between {low:.1f} s and {high:.1f} s; lower --interval")
    return max(inside)


def soak(steps: int, timepoints: int, channels: int, batch_size: int, interval: float, window: float) -> SoakResult:
    """Fit the estimator for ``steps`` steps while sampling memory; see the module docstring."""
    recording = synthetic_place_cells(num_neurons=channels, num_timepoints=timepoints, seed=0, discrete_direction=False)
    model = ContrastiveEmbedding(
        model_architecture="offset10",
        output_dimension=8,
        batch_size=batch_size,
        max_iterations=steps,
        device="cpu",
        random_state=0,
    )
    with MemoryWatch(interval) as watch:
        model.fit(recording)
    total = watch.samples[-1][0]
    start = window_peak(watch.samples, window * total, 2 * window * total)
    end = window_peak(watch.samples, (1 - window) * total, total)
    growth = end / start - 1
    return SoakResult(
        steps=steps,
        timepoints=timepoints,
        channels=channels,
        batch_size=batch_size,
        seconds=total,
        peak_rss_start_mib=start / 1024,
        peak_rss_end_mib=end / 1024,
        peak_growth=growth,
        process_peak_mib=watch.samples[-1][2] / 1024,
        first_loss=model.history_[0]["loss"],
        last_loss=model.history_[-1]["loss"],
        steady=growth <= ALLOWED_GROWTH,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--timepoints", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between memory samples")
    parser.add_argument(
        "--window", type=float, default=0.05, help="length of the start and end windows (fraction of the run)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = soak(args.steps, args.timepoints, args.channels, args.batch_size, args.interval, args.window)
    for key, value in asdict(result).items():
        print(f"{key:>18}  {value:.4g}" if isinstance(value, float) else f"{key:>18}  {value}")
    if args.output is not None:
        args.output.write_text(json.dumps(asdict(result), indent=2) + "\n")


if __name__ == "__main__":
    main()
