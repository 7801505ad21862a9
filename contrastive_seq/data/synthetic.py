"""Synthetic hippocampus: Poisson place cells on a back-and-forth linear track, with known ground truth.

An animal runs laps along a track ``[0, 1]``, alternately rightward (position
increasing) and leftward, each lap taking about ``lap_timepoints`` time bins
(jittered). Each neuron is a place cell with a Gaussian tuning curve around
its field centre, stronger in its preferred run direction (hippocampal place
fields are direction-selective on linear tracks); its spike count in a bin is
Poisson with the rate of the tuning curve at the current position and
direction. Position and direction are the ground-truth latents a good
embedding should recover.

This is the library's built-in example data for the time-series methods:
it needs no download and is reproducible from one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from contrastive_seq.data.recording import MultiSessionRecording, Recording
from contrastive_seq.seeding import derive_seed

RIGHTWARD, LEFTWARD = 1, 0


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_real(name: str, value: object, low: float, high: float, closed_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    inside = (low <= value if closed_low else low < value) and value <= high
    if not inside:
        raise ValueError(f"{name} must lie in {'[' if closed_low else '('}{low}, {high}], got {value}")
    return float(value)


def linear_track(
    num_timepoints: int, generator: torch.Generator, lap_timepoints: float = 200.0, lap_jitter: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position and run direction of laps back and forth along the track ``[0, 1]``.

    Lap ``i`` (starting rightward from 0) lasts ``L_i`` time bins, ``L_i``
    uniform in ``lap_timepoints * [1 - lap_jitter, 1 + lap_jitter]``
    (rounded, at least 2); position moves linearly through the lap, at the
    bin centres ``(j + 0.5) / L_i``, ``j = 0 .. L_i - 1``.

    Args:
        num_timepoints: T, number of time bins.
        generator: the source of the lap durations.
        lap_timepoints: mean bins per lap (one traversal of the track).
        lap_jitter: relative half-width of the lap-duration spread, in [0, 1).

    Returns:
        ``position (T,)`` float32 in (0, 1) and ``direction (T,)`` int64,
        1 (:data:`RIGHTWARD`) or 0 (:data:`LEFTWARD`).
    """
    _check_int("num_timepoints", num_timepoints, 1)
    _check_real("lap_timepoints", lap_timepoints, 2.0, float("inf"))
    _check_real("lap_jitter", lap_jitter, 0.0, 0.999)
    shortest = max(2.0, lap_timepoints * (1 - lap_jitter))
    num_laps = math.ceil(num_timepoints / shortest) + 1
    spread = 1 + lap_jitter * (2 * torch.rand(num_laps, generator=generator, dtype=torch.float64) - 1)
    lengths = (lap_timepoints * spread).round().long().clamp(min=2)
    starts = torch.cumsum(lengths, 0) - lengths
    time = torch.arange(num_timepoints)
    lap = torch.searchsorted(starts, time, right=True) - 1
    phase = ((time - starts[lap]).double() + 0.5) / lengths[lap].double()
    rightward = lap % 2 == 0
    position = torch.where(rightward, phase, 1 - phase).float()
    direction = torch.where(rightward, RIGHTWARD, LEFTWARD)
    return position, direction


@dataclass(frozen=True)
class PlaceCellModel:
    """Ground-truth place cells: Gaussian tuning to position, scaled by run direction.

    The rate of neuron ``i`` (expected spikes per time bin) at position ``p``
    and direction ``d`` is::

        background_rate + peak_rate * exp(-(p - centres[i])**2 / (2 * field_width**2))
                                    * (1 if d == preferred_direction[i] else 1 - direction_selectivity)

    Attributes:
        centres: ``(N,)`` field centres on the track ``[0, 1]``.
        preferred_direction: ``(N,)`` int64, 1 rightward or 0 leftward.
        field_width: Gaussian standard deviation of the fields, in track units.
        peak_rate: expected count per bin at the centre in the preferred direction.
        background_rate: expected count per bin far from the field.
        direction_selectivity: 0 (same field both ways) to 1 (no field against the preferred direction).
    """

    centres: torch.Tensor
    preferred_direction: torch.Tensor
    field_width: float = 0.08
    peak_rate: float = 2.0
    background_rate: float = 0.05
    direction_selectivity: float = 0.8

    def __post_init__(self) -> None:
        if self.centres.dim() != 1 or self.preferred_direction.shape != self.centres.shape:
            raise ValueError(
                f"centres and preferred_direction must both have shape (N,), "
                f"got {tuple(self.centres.shape)} and {tuple(self.preferred_direction.shape)}"
            )
        _check_real("field_width", self.field_width, 0.0, float("inf"), closed_low=False)
        _check_real("peak_rate", self.peak_rate, 0.0, float("inf"))
        _check_real("background_rate", self.background_rate, 0.0, float("inf"))
        _check_real("direction_selectivity", self.direction_selectivity, 0.0, 1.0)

    @classmethod
    def random(cls, num_neurons: int, generator: torch.Generator, **tuning: float) -> PlaceCellModel:
        """``num_neurons`` cells with centres uniform on the track and random preferred directions.

        ``tuning`` sets ``field_width``, ``peak_rate``, ``background_rate``, ``direction_selectivity``.
        """
        _check_int("num_neurons", num_neurons, 1)
        centres = torch.rand(num_neurons, generator=generator)
        preferred = torch.randint(2, (num_neurons,), generator=generator)
        return cls(centres, preferred, **tuning)

    @property
    def num_neurons(self) -> int:
        """N."""
        return self.centres.shape[0]

    def rates(self, position: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """Expected counts ``(T, N)`` float32 at ``position (T,)`` and ``direction (T,)``."""
        distance = position.float().unsqueeze(1) - self.centres.float().unsqueeze(0)
        field = torch.exp(-0.5 * (distance / self.field_width) ** 2)
        preferred = direction.unsqueeze(1) == self.preferred_direction.unsqueeze(0)
        gain = torch.where(preferred, 1.0, 1.0 - self.direction_selectivity)
        return self.background_rate + self.peak_rate * field * gain

    def sample(self, position: torch.Tensor, direction: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Poisson spike counts ``(T, N)`` float32 at ``position (T,)`` and ``direction (T,)``."""
        return torch.poisson(self.rates(position, direction), generator=generator)


def synthetic_place_cells(
    num_neurons: int = 40,
    num_timepoints: int = 10_000,
    seed: int = 0,
    lap_timepoints: float = 200.0,
    discrete_direction: bool = True,
    name: str = "session0",
    **tuning: float,
) -> Recording:
    """One session of place cells on the linear track (see the module docstring).

    Args:
        num_neurons: N channels.
        num_timepoints: T time bins.
        seed: everything (laps, fields, spikes) follows from it.
        lap_timepoints: mean bins per traversal of the track.
        discrete_direction: also give the direction as discrete labels.
        name: the session's name.
        tuning: :class:`PlaceCellModel` parameters (``field_width``,
            ``peak_rate``, ``background_rate``, ``direction_selectivity``).

    Returns:
        A :class:`Recording` with ``neural (T, N)`` float32 counts,
        ``continuous (T, 2)`` = ``[position in (0, 1), direction (1.0 rightward, 0.0 leftward)]``
        and, with ``discrete_direction``, ``discrete (T,)`` = direction (1 rightward, 0 leftward).
    """
    generator = torch.Generator().manual_seed(derive_seed(seed))
    position, direction = linear_track(num_timepoints, generator, lap_timepoints)
    model = PlaceCellModel.random(num_neurons, generator, **tuning)
    counts = model.sample(position, direction, generator)
    continuous = torch.stack([position, direction.float()], dim=1)
    return Recording(counts, continuous, direction if discrete_direction else None, name=name)


def synthetic_place_cell_sessions(
    num_neurons: Sequence[int] = (30, 40, 50),
    num_timepoints: int | Sequence[int] = 5_000,
    seed: int = 0,
    **options: float | bool,
) -> MultiSessionRecording:
    """Several sessions (animals) on the same track: own neurons and laps, behaviour of one meaning.

    Args:
        num_neurons: neurons of each session; its length is the number of sessions.
        num_timepoints: time bins, one for all sessions or one per session.
        seed: session ``s`` is :func:`synthetic_place_cells` with seed ``derive_seed(seed, s)``.
        options: passed to :func:`synthetic_place_cells` (``lap_timepoints``,
            ``discrete_direction``, tuning parameters).

    Returns:
        A :class:`MultiSessionRecording` of sessions named ``session0``, ``session1``, ...
    """
    if isinstance(num_neurons, int) or len(num_neurons) == 0:
        raise ValueError(f"num_neurons must be a non-empty sequence of ints (one per session), got {num_neurons!r}")
    lengths = [num_timepoints] * len(num_neurons) if isinstance(num_timepoints, int) else list(num_timepoints)
    if len(lengths) != len(num_neurons):
        raise ValueError(
            f"num_timepoints must be an int or have one entry per session ({len(num_neurons)}), got {num_timepoints!r}"
        )
    return MultiSessionRecording(
        [
            synthetic_place_cells(n, t, seed=derive_seed(seed, s), name=f"session{s}", **options)
            for s, (n, t) in enumerate(zip(num_neurons, lengths))
        ]
    )
