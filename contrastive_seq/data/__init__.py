"""Containers and loaders for the data the samplers index into."""

from contrastive_seq.data.arrays import ArrayDataset

__all__ = ["ArrayDataset", "load_digits"]


def __getattr__(name: str) -> object:
    """``load_digits`` on first use: it imports scikit-learn, which reading a config need not."""
    if name == "load_digits":
        from contrastive_seq.data.digits import load_digits

        return load_digits
    raise AttributeError(f"module 'contrastive_seq.data' has no attribute {name!r}")

from contrastive_seq.data.hdf5 import (
    HDF5TimeSeries,
    load_recording,
    load_recordings,
    save_recordings,
)
from contrastive_seq.data.recording import MultiSessionRecording, Recording
from contrastive_seq.data.timeseries_files import load_timeseries
from contrastive_seq.data.synthetic import (
    PlaceCellModel,
    synthetic_place_cell_sessions,
    synthetic_place_cells,
)

__all__ += [
    "HDF5TimeSeries",
    "MultiSessionRecording",
    "PlaceCellModel",
    "Recording",
    "load_recording",
    "load_recordings",
    "load_timeseries",
    "save_recordings",
    "synthetic_place_cell_sessions",
    "synthetic_place_cells",
]
