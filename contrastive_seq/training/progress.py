"""What a fit shows and writes as it goes: the progress bar, the throughput, and the metrics file.

Throughput is measured over a window of steps that restarts at every logged
step; time spent evaluating and saving (inside :meth:`Progress.paused`)
does not count against it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contrastive_seq.training.metrics import MetricsWriter


class Progress:
    """The progress bar (rank 0), the samples-per-second window and the :class:`MetricsWriter` of one fit.

    Args:
        start: completed steps when the fit begins (a resumed run's step).
        max_steps: steps of the whole run.
        samples_per_step: pairs per step over all ranks.
        show: show the bar (``TrainerConfig.progress`` on rank 0).
        metrics: the JSON-lines file to append records to, or ``None`` to write none.
        write: whether this process writes (rank 0).
    """

    def __init__(
        self, start: int, max_steps: int, samples_per_step: int, show: bool, metrics: Path | None, write: bool
    ):
        self.samples_per_step = samples_per_step
        self.writer = None if metrics is None else MetricsWriter(metrics, enabled=write, resume_step=start)
        self.bar = tqdm(
            total=max_steps, initial=start, desc="train", unit="step", dynamic_ncols=True, disable=not show
        )
        self.window_start, self.window_steps = time.perf_counter(), 0

    def advance(self, loss: float) -> float:
        """Count one step of ``loss`` on the bar; returns the samples per second of the current window."""
        self.window_steps += 1
        rate = self.window_steps * self.samples_per_step / max(time.perf_counter() - self.window_start, 1e-9)
        self.bar.set_postfix(loss=f"{loss:.4g}", samples_s=f"{rate:.0f}", refresh=False)
        self.bar.update()
        return rate

    def restart_window(self) -> None:
        """Start a new throughput window (at a logged step)."""
        self.window_start, self.window_steps = time.perf_counter(), 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside the ``with`` block (evaluation, checkpoints) out of the throughput."""
        paused = time.perf_counter()
        try:
            yield
        finally:
            self.window_start += time.perf_counter() - paused

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` to the metrics file (when there is one)."""
        if self.writer is not None:
            self.writer.write(record)

    def close(self) -> None:
        """Close the bar and the metrics file."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
