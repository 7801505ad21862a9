"""Encoders and heads."""

from contrastive_seq.models.heads import MLPHead
from contrastive_seq.models.small_cnn import SmallConvNet
from contrastive_seq.models.timeseries import (
    TIME_SERIES_ENCODERS,
    ConvolutionalEncoder,
    PointwiseMLPEncoder,
    TimeSeriesEncoder,
    make_time_series_encoder,
)

__all__ = [
    "MLPHead",
    "SmallConvNet",
    "TIME_SERIES_ENCODERS",
    "ConvolutionalEncoder",
    "PointwiseMLPEncoder",
    "TimeSeriesEncoder",
    "make_time_series_encoder",
]
