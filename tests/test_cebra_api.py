"""contrastive_seq.CEBRA (CEBRA 0.6.1's API on the shared estimator), the architecture registry,
multi-session discrete / time-only sampling, adaptation and the degenerate-input warnings."""

import math
import warnings

import numpy as np
import pytest
import torch

import contrastive_seq
import contrastive_seq.estimator as estimator_module
from contrastive_seq import CEBRA, ContrastiveEmbedding
from contrastive_seq.data.recording import Recording
from contrastive_seq.estimator import DegenerateInputWarning, EstimatorInputError, embed_in_batches
from contrastive_seq.methods.cebra import WholeRecordingViews
from contrastive_seq.models.architectures import (
    ARCHITECTURES,
    make_architecture,
    register_architecture,
    supported_model_architectures,
)
from contrastive_seq.models.timeseries import PointwiseMLPEncoder
from contrastive_seq.sampling.multisession import MultiSessionDiscreteSampler, MultiSessionTimeSampler
from contrastive_seq.sampling.time import TimeContrastiveSampler
from contrastive_seq.views.windows import WindowViews

QUICK = {"max_iterations": 3, "batch_size": 40, "device": "cpu", "output_dimension": 4, "random_state": 0}
RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, (300, 12))
X2 = RNG.uniform(0, 1, (240, 7))
YC = RNG.uniform(0, 1, (300, 3))
YC_B = RNG.uniform(0, 1, (300, 2))
YD = RNG.integers(0, 4, 300)
YD2 = RNG.integers(0, 4, 240)

pytestmark = pytest.mark.filterwarnings("ignore::contrastive_seq.estimator.DegenerateInputWarning")


def test_defaults_are_cebra_0_6_1s():
    assert CEBRA().get_params() == {
        "model_architecture": "offset1-model",
        "device": "cuda_if_available",
        "criterion": "infonce",
        "distance": "cosine",
        "conditional": None,
        "temperature": 1.0,
        "temperature_mode": "constant",
        "min_temperature": 0.1,
        "time_offsets": 1,
        "delta": None,
        "max_iterations": 10000,
        "max_adapt_iterations": 500,
        "batch_size": None,
        "learning_rate": 3e-4,
        "optimizer": "adam",
        "output_dimension": 8,
        "verbose": False,
        "num_hidden_units": 32,
        "pad_before_transform": True,
        "hybrid": False,
        "optimizer_kwargs": (("betas", (0.9, 0.999)), ("eps", 1e-08), ("weight_decay", 0), ("amsgrad", False)),
        "masking_kwargs": None,
        "random_state": None,
    }
    assert contrastive_seq.CEBRA is CEBRA


FIELDS = {
    "offset1-model": (1, True),
    "offset1-model-mse": (1, False),
    "offset5-model": (5, True),
    "offset10-model": (10, True),
    "offset10-model-mse": (10, False),
    "offset36-model": (36, True),
    "offset36-model-dropout": (36, True),
    "offset36-model-more-dropout": (36, True),
    "offset20-model-4x-subsample": (20, True),
    "offset40-model-4x-subsample": (40, True),
}


@pytest.mark.parametrize("name", list(FIELDS))
def test_cebra_architectures_field_normalisation_and_stride(name):
    field, normalised = FIELDS[name]
    torch.manual_seed(0)
    encoder = make_architecture(name, 5, 3, 8, normalize=not normalised).eval()
    assert encoder.receptive_field == field and encoder.normalize is normalised
    assert (name in supported_model_architectures()) == ("subsample" not in name)
    x = torch.randn(103, 5)
    z = encoder.embed_sequence(x)
    stride = encoder.time_stride
    assert stride == (4 if "subsample" in name else 1)
    assert z.shape == (math.ceil(103 / stride), 3)
    norms = z.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) == normalised
    # row j is the window around time stride * j of the replicate-padded sequence (the definition)
    padded = torch.nn.functional.pad(x.T[None], (encoder.left_context, encoder.right_context), mode="replicate")[0]
    for j in (0, 7, len(z) - 1):
        window = padded[:, stride * j : stride * j + field][None]
        assert torch.allclose(encoder(window)[0], z[j], atol=1e-5)
    for batch_size in (field, field + 9):
        assert torch.allclose(embed_in_batches(encoder, x, batch_size, pad=True), z, atol=1e-5)
    unpadded = embed_in_batches(encoder, x, None, pad=False)
    assert unpadded.shape[0] == (103 - field) // stride + 1
    assert torch.allclose(unpadded[0], encoder(x.T[None, :, :field])[0], atol=1e-5)


def test_register_a_custom_architecture():
    name = "test-linear-model"
    register_architecture(
        name, lambda c, d, h, normalize: PointwiseMLPEncoder(c, d, h, hidden_layers=1, normalize=normalize),
        normalize=False, replace=True,
    )
    try:
        assert name in CEBRA.supported_model_architectures("test-*")
        model = CEBRA(model_architecture=name, **QUICK).fit(X, YC)
        assert model.transform(X).shape == (300, 4)
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(name, PointwiseMLPEncoder)
    finally:
        del ARCHITECTURES[name]
    with pytest.raises(ValueError, match="model_architecture must be one of"):
        CEBRA(model_architecture=name, **QUICK).fit(X)


def test_positional_labels_sessions_and_errors():
    model = CEBRA(model_architecture="offset10-model", time_offsets=5, **QUICK)
    model.fit(X, YC, YC_B, YD)
    assert model.label_kind_ == "mixed" and model.num_sessions is None and model.n_features_ == 12
    assert model.transform(torch.Tensor(X), session_id=0, batch_size=50).shape == (300, 4)
    for call, error, message in (
        (lambda: model.transform(X, session_id=2), RuntimeError, "Invalid session_id"),
        (lambda: model.transform(X, batch_size=0), ValueError, "batch_size"),
        (lambda: model.transform(X, batch_size=5), ValueError, "required.*offset.*length"),
        (lambda: model.fit(X, [YC, YC[:200]]), ValueError, "Invalid.*labels"),
        (lambda: model.fit(X, YC[:200]), ValueError, "Invalid.*samples"),
        (lambda: model.fit([X, X2]), RuntimeError, "No.*label"),
        (lambda: model.fit([X, X2], YC), ValueError, "Invalid.*sessions"),
    ):
        with pytest.raises(error, match=message):
            call()
    assert model.label_kind_ == "mixed", "an argument error keeps the previous fit"
    model.fit([X, X2], [YD, YD2])
    assert model.num_sessions == 2 and model.n_features_ == [12, 7]
    assert model.transform(X2, session_id=1).shape == (240, 4)
    with pytest.raises(EstimatorInputError, match="No session_id provided") as raised:
        model.transform(X)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, RuntimeError)
    with pytest.raises(ValueError, match="shape"):
        model.transform(X2, session_id=0)


def test_state_dict_partial_fit_and_plots():
    model = CEBRA(model_architecture="offset5-model", **QUICK).partial_fit(X, YC)
    model.partial_fit(X, YC)
    state = model.state_dict_
    assert {"model", "optimizer", "loss", "decode", "criterion", "version", "log"} <= set(state)
    assert len(state["loss"]) == 6 and all(len(values) == 6 for values in state["log"].values())
    assert next(iter(state["model"].values())).shape[1] == 12
    model.fit(X)
    assert len(model.state_dict_["loss"]) == 3
    ax = contrastive_seq.plot_loss(model, label="run")
    assert np.allclose(ax.lines[-1].get_ydata(), model.state_dict_["loss"])
    ax = contrastive_seq.plot_temperature(model)
    assert np.allclose(ax.lines[-1].get_ydata(), 1.0)


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_save_load_backends_and_across_classes(tmp_path, backend):
    path = tmp_path / "model.pt"
    model = CEBRA(model_architecture="offset10-model-mse", **QUICK).fit(X, YC)
    model.save(path, backend=backend)
    loaded = CEBRA.load(path, backend="auto")
    assert loaded.get_params() == model.get_params()
    assert np.allclose(loaded.transform(X), model.transform(X))
    other = ContrastiveEmbedding.load(path)
    assert np.allclose(other.transform(X), model.transform(X))
    other.save(path)
    assert np.allclose(CEBRA.load(path).transform(X), model.transform(X))
    with pytest.raises(ValueError, match="weights_only=False"):
        CEBRA.load(path, weights_only=False)
    with pytest.raises(NotImplementedError, match="backend"):
        model.save(path, backend="pickle")


def test_full_batch_embeds_the_recording_once_with_the_window_loss():
    """``batch_size=None`` uses one pass over the recording; its loss equals the window batch's on the same pairs."""
    model = CEBRA(model_architecture="offset10-model", time_offsets=3, max_iterations=1, device="cpu", random_state=0)
    model.fit(X)
    encoder = model._encoder()
    recording = Recording(X.astype(np.float32))
    pairs = TimeContrastiveSampler(300, 3, encoder.left_context, encoder.right_context).sample(64, torch.Generator())
    windows = model.model_.training_step(WindowViews.for_encoder(encoder)(recording, pairs, torch.Generator()))
    whole = model.model_.training_step(WholeRecordingViews(encoder.left_context)(recording, pairs, torch.Generator()))
    assert torch.allclose(windows.loss, whole.loss, atol=1e-5)
    assert len(model.history_) == 1


def test_a_batch_embeds_the_recording_once_where_that_costs_fewer_multiply_adds(monkeypatch):
    """With a batch size, one pass over a short recording replaces the windows: same losses step by step.

    300 time points against 3 x 100 windows of 10: the pass costs fewer
    multiply-adds and is chosen; forcing windows gives the same history
    (1e-5). A long recording, or a dropout encoder (masks shared by the whole
    pass), keeps windows.
    """
    chosen = []
    monkeypatch.setattr(estimator_module, "WholeRecordingViews", _spy(WholeRecordingViews, chosen, "whole"))
    monkeypatch.setattr(estimator_module, "WindowViews", _spy(WindowViews, chosen, "windows"))
    settings = dict(QUICK, model_architecture="offset10", batch_size=100, max_iterations=4)
    whole = ContrastiveEmbedding(**settings).fit(X, YC)
    monkeypatch.setattr(ContrastiveEmbedding, "_whole_pass_pays", lambda self, encoder, recording: False)
    windows = ContrastiveEmbedding(**settings).fit(X, YC)
    assert chosen == ["whole", "windows"]
    np.testing.assert_allclose(
        [r["loss"] for r in whole.history_], [r["loss"] for r in windows.history_], rtol=0, atol=1e-5
    )
    monkeypatch.undo()
    model = ContrastiveEmbedding(**dict(settings, batch_size=10, max_iterations=1)).fit(X, YC)
    assert not model._whole_pass_pays(model._encoder(), Recording(X.astype(np.float32)))
    dropout = ContrastiveEmbedding(**dict(settings, model_architecture="offset36-model-dropout")).fit(X, YC)
    assert not dropout._whole_pass_pays(dropout._encoder(), Recording(X.astype(np.float32)))


def test_one_pass_over_the_recording_gives_the_window_batchs_loss_and_gradients():
    """The pass and the windows embed the same pairs alike: loss and every parameter's gradient to 1e-5."""
    model = ContrastiveEmbedding(**dict(QUICK, model_architecture="offset10", max_iterations=1)).fit(X, YC)
    encoder = model._encoder()
    recording = Recording(X.astype(np.float32))
    pairs = TimeContrastiveSampler(300, 3, encoder.left_context, encoder.right_context).sample(100, torch.Generator())
    results = []
    for views in (WindowViews.for_encoder(encoder), WholeRecordingViews(encoder.left_context)):
        model.model_.zero_grad()
        loss = model.model_.training_step(views(recording, pairs, torch.Generator())).loss
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.model_.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 1
    for window_value, whole_value in zip(*results):
        torch.testing.assert_close(whole_value, window_value, rtol=0, atol=1e-5)


def _spy(views_class: type, chosen: list[str], name: str) -> type:
    """``views_class`` that appends ``name`` to ``chosen`` when the estimator builds it."""

    class Spied(views_class):
        def __init__(self, *args, **kwargs):
            chosen.append(name)
            super().__init__(*args, **kwargs)

    return Spied


def test_adapt_trains_only_a_new_input_layer():
    model = CEBRA(model_architecture="offset10-model", max_adapt_iterations=2, **QUICK).fit(X, YC)
    before = {name: value.clone() for name, value in model._encoder().state_dict().items()}
    model.fit(X2, YD2, adapt=True)
    after = model._encoder().state_dict()
    assert after["network.0.weight"].shape[1] == 7 and model.n_features_ == 7
    for name in before:
        if not name.startswith("network.0."):
            assert torch.equal(before[name], after[name]), name
    assert all(parameter.requires_grad for parameter in model.model_.parameters())
    assert model.transform(X2).shape == (240, 4)
    with pytest.raises(NotImplementedError, match="multisession"):
        model.fit([X, X2], [YC[:, :1], YC[:240, :1]], adapt=True)


def test_adapting_trains_the_new_layer_at_ten_times_the_learning_rate_unless_set(monkeypatch):
    """One layer alone at the whole model's rate lags a fit from scratch (benchmarks/adapt_new_session.py)."""
    rates = []
    original = estimator_module.TrainerConfig
    monkeypatch.setattr(estimator_module, "TrainerConfig", lambda **kw: rates.append(kw["lr"]) or original(**kw))
    settings = dict(QUICK, model_architecture="offset10", max_adapt_iterations=1, learning_rate=2e-4)
    model = ContrastiveEmbedding(**settings).fit(X, YC).fit(X2, YD2, adapt=True)
    model.set_params(adapt_learning_rate=5e-3).fit(X2, YD2, adapt=True)
    assert rates == [2e-4, pytest.approx(2e-3), 5e-3]
    with pytest.raises(ValueError, match="adapt_learning_rate"):
        ContrastiveEmbedding(**dict(settings, adapt_learning_rate=0.0)).fit(X, YC)


def test_multi_session_discrete_sampler_pairs_one_label_across_sessions():
    labels = [torch.randint(0, 3, (50,)), torch.randint(0, 3, (70,))]
    sampler = MultiSessionDiscreteSampler(labels, left_context=2, right_context=1, num_negatives=5)
    pairs = sampler.sample(40, torch.Generator().manual_seed(1))
    global_labels = torch.cat(labels)
    assert torch.equal(global_labels[pairs.reference], global_labels[pairs.positive[:, 0]])
    reference_session = (pairs.reference >= 50).long()
    positive_session = (pairs.positive[:, 0] >= 50).long()
    assert bool((reference_session != positive_session).all())
    local = torch.where(pairs.positive[:, 0] >= 50, pairs.positive[:, 0] - 50, pairs.positive[:, 0])
    assert bool((local >= 2).all()) and bool((local < torch.where(positive_session == 1, 69, 49)).all())
    with pytest.raises(ValueError, match=r"discrete\[0\] holds labels \[5\]"):
        MultiSessionDiscreteSampler([torch.tensor([0, 1, 5, 0]), torch.tensor([0, 1, 1, 0])])


def test_multi_session_time_sampler_pairs_within_each_session():
    sampler = MultiSessionTimeSampler([30, 40], time_offset=4, left_context=1, right_context=2)
    pairs = sampler.sample(20, torch.Generator().manual_seed(0))
    assert torch.equal(pairs.positive[:, 0], pairs.reference + 4)
    assert bool((pairs.reference[:10] < 30 - 2 - 4).all()) and bool((pairs.reference[10:] >= 30 + 1).all())


@pytest.mark.parametrize("labels", ["discrete", "none"])
def test_multi_session_with_discrete_labels_or_none(labels):
    y = [YD, YD2] if labels == "discrete" else None
    model = ContrastiveEmbedding(model_architecture="offset5", time_offsets=2, **QUICK).fit([X, X2], y)
    assert model.label_kind_ == ("discrete" if labels == "discrete" else "none")
    embeddings = model.transform([X, X2])
    assert [e.shape for e in embeddings] == [(300, 4), (240, 4)]


def test_degenerate_input_warns_before_training(monkeypatch):
    class Refused(Exception):
        pass

    def no_training(*args, **kwargs):
        raise Refused

    monkeypatch.setattr(estimator_module, "Trainer", no_training)
    for data, labels, message in (
        (np.ones((200, 5)), (), "X is constant over time"),
        (np.full((200, 5), 1e9) + np.arange(200)[:, None] * 1e-3, (), "X is constant over time"),
        (X, (np.arange(300),), "every discrete label is distinct"),
    ):
        with pytest.warns(DegenerateInputWarning, match=message), pytest.raises(Refused):
            CEBRA(**QUICK).fit(data, *labels)


def test_a_fit_that_never_leaves_chance_warns():
    """Constant input: every candidate scores alike, the loss stays at ln(batch) for all 50 steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        warnings.filterwarnings("error", "the loss never left", DegenerateInputWarning)
        with pytest.raises(DegenerateInputWarning, match=r"ln\(candidates\) = 3\.689"):
            CEBRA(**{**QUICK, "max_iterations": 50}).fit(np.ones((200, 5)))
