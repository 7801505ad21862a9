"""Containers and loaders for the data the samplers index into.

The names below are imported on first use (they need torch, h5py or
scikit-learn, which reading a config need not).
"""

from contrastive_seq.lazy import lazy_attributes

_LAZY = {
    "ArrayDataset": "contrastive_seq.data.arrays",
    "HDF5TimeSeries": "contrastive_seq.data.hdf5",
    "MultiSessionRecording": "contrastive_seq.data.recording",
    "PlaceCellModel": "contrastive_seq.data.synthetic",
    "Recording": "contrastive_seq.data.recording",
    "load_digits": "contrastive_seq.data.digits",
    "load_recording": "contrastive_seq.data.hdf5",
    "load_recordings": "contrastive_seq.data.hdf5",
    "load_timeseries": "contrastive_seq.data.timeseries_files",
    "save_recordings": "contrastive_seq.data.hdf5",
    "synthetic_place_cell_sessions": "contrastive_seq.data.synthetic",
    "synthetic_place_cells": "contrastive_seq.data.synthetic",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
