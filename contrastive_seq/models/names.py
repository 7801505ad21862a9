"""The names of the built-in models, importable without torch: a config naming one is checked with them.

The modules that build the models read their names from here:
:data:`~contrastive_seq.models.timeseries.TIME_SERIES_ENCODERS` maps each of
:data:`TIME_SERIES_ENCODER_NAMES`, in its order, to a builder;
:func:`~contrastive_seq.models.cpc.make_context_model` and
:class:`~contrastive_seq.models.cpc.StepPredictors` build the kinds named in
:data:`CONTEXT_MODELS` and :data:`PREDICTORS`.
"""

TIME_SERIES_ENCODER_NAMES = ("offset1-mlp", "offset5", "offset10", "offset36")
CONTEXT_MODELS = ("gru", "lstm", "transformer")
PREDICTORS = ("bilinear", "mlp")
