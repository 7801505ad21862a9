"""The names of the time-series encoders, importable without torch (a config naming one is checked with them).

:data:`~contrastive_seq.models.timeseries.TIME_SERIES_ENCODERS` maps each name, in this order, to its builder.
"""

TIME_SERIES_ENCODER_NAMES = ("offset1-mlp", "offset5", "offset10", "offset36")
