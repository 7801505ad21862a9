"""Encoders and heads.

The names below are imported on first use (they need torch, which reading a config need not).
"""

from contrastive_seq.lazy import lazy_attributes

_LAZY = {
    "MLPHead": "contrastive_seq.models.heads",
    "SmallConvNet": "contrastive_seq.models.small_cnn",
    "TIME_SERIES_ENCODERS": "contrastive_seq.models.timeseries",
    "ConvolutionalEncoder": "contrastive_seq.models.timeseries",
    "PointwiseMLPEncoder": "contrastive_seq.models.timeseries",
    "TimeSeriesEncoder": "contrastive_seq.models.timeseries",
    "make_time_series_encoder": "contrastive_seq.models.timeseries",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
