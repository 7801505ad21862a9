"""The Method contract: parameter groups, the hook before the optimiser step, the run length, LARS."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastive_seq.data import ArrayDataset
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method, ParamGroup
from contrastive_seq.models.ema import EMACopy
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.training.optimizers import LARS, parameter_groups
from contrastive_seq.views import TransformedViews

DIM = 6


class Siamese(Method):
    """A linear encoder with a norm, a linear predictor and an EMA copy; records what each hook saw."""

    def __init__(self, groups: list[ParamGroup] | None = None, freeze_predictor_until: int = 0):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(DIM, DIM), nn.LayerNorm(DIM))
        self.predictor = nn.Linear(DIM, DIM)
        self.target = EMACopy(self.encoder, 0.5, 1.0)
        self.groups = groups or []
        self.freeze_predictor_until = freeze_predictor_until
        self.seen: list[tuple[str, int]] = []

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        views = batch["views"]  # (2, N, DIM)
        prediction = self.predictor(self.encoder(views[0]))
        return LossOutput(-F.cosine_similarity(prediction, self.target(views[1])).mean())

    def param_groups(self) -> list[ParamGroup]:
        return self.groups

    def before_optimizer_step(self, step: int) -> None:
        assert all(p.grad is not None for p in self.encoder.parameters())
        self.seen.append(("before", step))
        if step < self.freeze_predictor_until:
            for parameter in self.predictor.parameters():
                parameter.grad = None

    def after_step(self, step: int) -> None:
        self.seen.append(("after", step))
        self.target.update(self.encoder, step)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def trainer(method: Method, **config) -> Trainer:
    data = ArrayDataset(torch.randn(32, DIM, generator=torch.Generator().manual_seed(0)))
    settings = {"max_steps": 4, "batch_size": 8, "progress": False, "checkpoint_every": None, "lr": 0.1, **config}
    views = TransformedViews(lambda x: x + 0.1 * torch.randn_like(x))
    return Trainer(method, TrainerConfig(**settings), data, AugmentationSampler(32), views)


def groups_by_name(trained: Trainer) -> dict[str, dict]:
    return {group["name"]: group for group in trained.optimizer.param_groups}


def test_norms_and_biases_get_no_weight_decay_by_default():
    groups = groups_by_name(trainer(Siamese(), weight_decay=0.1))
    assert set(groups) == {"default", "default/no_decay"}
    assert groups["default"]["weight_decay"] == 0.1 and groups["default/no_decay"]["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in groups["default"]["params"])
    assert len(groups["default/no_decay"]["params"]) == 4  # two biases, the norm's scale and shift
    decayed = groups_by_name(trainer(Siamese(), weight_decay=0.1, decay_norms_and_biases=True))
    assert set(decayed) == {"default"} and len(decayed["default"]["params"]) == 6


def test_a_fixed_rate_group_keeps_its_rate_while_the_rest_decays():
    method = Siamese([ParamGroup("predictor", ("predictor.",), lr_scale=2.0, weight_decay=0.5, scheduled=False)])
    run = trainer(method, weight_decay=0.1, warmup_steps=1)
    groups = groups_by_name(run)
    assert set(groups) == {"predictor", "predictor/no_decay", "default", "default/no_decay"}
    assert groups["predictor"]["weight_decay"] == 0.5 and groups["predictor/no_decay"]["weight_decay"] == 0.0
    assert groups["predictor"]["params"] == [method.predictor.weight]
    names = [group["name"] for group in run.optimizer.param_groups]
    factors = [dict(zip(names, (factor(step) for factor in run.scheduler.lr_lambdas))) for step in range(4)]
    assert [f["predictor"] for f in factors] == [1.0] * 4 and groups["predictor"]["lr"] == 0.2
    assert factors[0]["default"] == factors[1]["default"] == 1.0 > factors[2]["default"] > factors[3]["default"]


def test_a_hook_runs_between_backward_and_the_step_and_can_freeze_a_layer():
    method = Siamese(freeze_predictor_until=2)
    before = method.predictor.weight.detach().clone()
    run = trainer(method, optimizer="sgd", momentum=0.0, max_steps=2)
    run.fit()
    assert method.seen == [("before", 0), ("after", 0), ("before", 1), ("after", 1)]
    assert torch.equal(method.predictor.weight, before)  # no gradient, no SGD step
    assert not torch.equal(method.encoder[0].weight, run.method.target.module[0].weight)


def test_schedules_default_to_the_run_length():
    method = Siamese()
    assert method.target.total_steps is None
    trainer(method, max_steps=7)
    assert method.total_steps == 7 and method.target.total_steps == 7
    assert method.target.momentum_at(7) == 1.0 and method.target.momentum_at(0) == 0.5
    trainer(method, max_steps=9)  # a second run follows its own length
    assert method.target.total_steps == 9
    own = EMACopy(nn.Linear(2, 2), 0.5, 1.0, total_steps=3)
    own.set_total_steps(9)
    assert own.total_steps == 3  # an explicit length is kept


@pytest.mark.parametrize(
    "groups, message",
    [
        ([ParamGroup("head", ("head.",))], "ParamGroup 'head' of Siamese names no trainable parameter"),
        ([ParamGroup("a", ("encoder.0",)), ParamGroup("b", ("encoder.0.w",))], "'encoder.0.weight' is claimed by"),
        ([ParamGroup("a", ("encoder.",)), ParamGroup("a", ("predictor.",))], "names must be unique"),
        (["predictor."], "must return ParamGroup objects"),
    ],
)
def test_bad_parameter_groups_are_refused_before_training(groups, message):
    method = Siamese(groups)
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        trainer(method)
    assert method.seen == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "p", "prefixes": "predictor."}, "prefixes must be a non-empty tuple"),
        ({"name": "p", "prefixes": ("predictor.",), "lr_scale": 0}, "'p': lr_scale must be a positive"),
        ({"name": "p", "prefixes": ("predictor.",), "weight_decay": -1.0}, "'p': weight_decay must be None"),
    ],
)
def test_bad_param_group_settings_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ParamGroup(**kwargs)


class ChangesRunLength(Siamese):
    def __init__(self, where: str):
        super().__init__()
        self.where = where

    def set_total_steps(self, total_steps: int) -> None:
        super().set_total_steps(total_steps * 2 if self.where == "set_total_steps" else total_steps)

    def before_optimizer_step(self, step: int) -> None:
        if self.where == "before_optimizer_step":
            self.total_steps = step + 100


def test_a_method_that_changes_the_step_count_is_refused():
    message = r"ChangesRunLength\.set_total_steps changed the run's step count.*max_steps=4"
    with pytest.raises(ValueError, match=message):
        trainer(ChangesRunLength("set_total_steps"))
    run = trainer(ChangesRunLength("before_optimizer_step"))
    with pytest.raises(ValueError, match=r"before_optimizer_step changed the run's step count"):
        run.fit()
    assert run.step == 0


def test_unknown_optimizer_names_the_setting():
    with pytest.raises(ValueError, match=r"TrainerConfig\.optimizer must be one of \('adamw', 'sgd', 'lars'\)"):
        TrainerConfig(optimizer="lamb")


def lars_reference(weights, gradients, lr, momentum, weight_decay, eta, adapt, steps_state=None):
    """One LARS step, parameter by parameter, from the formula of You et al. (2017), eq. 6."""
    new, buffers = [], []
    for index, (w, g) in enumerate(zip(weights, gradients)):
        update = g + weight_decay * w
        if adapt[index] and w.norm() > 0 and g.norm() > 0:
            update = update * (eta * w.norm() / (g.norm() + weight_decay * w.norm() + 1e-8))
        buffer = update if steps_state is None else momentum * steps_state[index] + update
        buffers.append(buffer)
        new.append(w - lr * buffer)
    return new, buffers


def test_lars_matches_the_formula_loop_and_lightly():
    generator = torch.Generator().manual_seed(1)
    weights = [torch.randn(5, 4, generator=generator), torch.randn(4, generator=generator)]
    params = [nn.Parameter(w.clone()) for w in weights]
    optimizer = LARS(
        [{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0, "lars_adapt": False}],
        lr=0.5,
        momentum=0.9,
        weight_decay=0.01,
        trust_coefficient=0.02,
    )
    expected, state = [w.clone() for w in weights], None
    for _ in range(3):
        gradients = [torch.randn(w.shape, generator=generator) for w in weights]
        for parameter, gradient in zip(params, gradients):
            parameter.grad = gradient.clone()
        optimizer.step()
        first, state0 = lars_reference(expected[:1], gradients[:1], 0.5, 0.9, 0.01, 0.02, [True], state and state[:1])
        second, state1 = lars_reference(expected[1:], gradients[1:], 0.5, 0.9, 0.0, 0.02, [False], state and state[1:])
        expected, state = first + second, state0 + state1
        for parameter, value in zip(params, expected):
            torch.testing.assert_close(parameter.detach(), value)

    lightly_lars = pytest.importorskip("lightly.utils.lars").LARS
    ours_params = [nn.Parameter(w.clone()) for w in weights]
    theirs_params = [nn.Parameter(w.clone()) for w in weights]
    # lightly adapts a group exactly when its weight decay is non-zero; ours by lars_adapt
    ours = LARS([{"params": ours_params[:1]}, {"params": ours_params[1:], "weight_decay": 0.0, "lars_adapt": False}],
                lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02)
    theirs = lightly_lars([{"params": theirs_params[:1]}, {"params": theirs_params[1:], "weight_decay": 0.0}],
                          lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02)
    for _ in range(3):
        gradients = [torch.randn(w.shape, generator=generator) for w in weights]
        for group, optimizer in ((ours_params, ours), (theirs_params, theirs)):
            for parameter, gradient in zip(group, gradients):
                parameter.grad = gradient.clone()
            optimizer.step()
    for mine, other in zip(ours_params, theirs_params):
        torch.testing.assert_close(mine, other)


def test_lars_trains_through_the_trainer():
    method = Siamese()
    run = trainer(method, optimizer="lars", lr=1.0, weight_decay=1e-4, max_steps=6)
    groups = groups_by_name(run)
    assert groups["default"]["lars_adapt"] and not groups["default/no_decay"]["lars_adapt"]
    first = run.fit()
    assert torch.isfinite(torch.tensor(first["loss"]))


def test_parameter_groups_skip_frozen_parameters():
    method = Siamese()
    method.predictor.requires_grad_(False)
    groups = parameter_groups(method, TrainerConfig())
    assert sum(len(group["params"]) for group in groups) == 4


def test_the_method_docstring_example_runs():
    """The example in ``Method``'s docstring, executed as written with small data."""
    source = Method.__doc__.split("::\n", 1)[1]
    code = "\n".join(line[8:] for line in source.splitlines())
    code = code.replace("max_steps=500", "max_steps=3").replace("batch_size=64", "batch_size=8")
    namespace = {
        "encoder": nn.Sequential(nn.Flatten(), nn.Linear(16, 64)),
        "data": ArrayDataset(torch.randn(16, 1, 4, 4)),
        "sampler": AugmentationSampler(16),
        "views": TransformedViews(lambda x: x + 0.1 * torch.randn_like(x)),
    }
    exec(compile(code.replace(".fit()", ".fit(); RESULT = True"), "Method example", "exec"), namespace)
    assert namespace["RESULT"]


def test_dino_freezes_its_last_layer_through_the_hook():
    from contrastive_seq.losses.dino import DINOLoss
    from contrastive_seq.methods.dino import DINO
    from contrastive_seq.models.dino_head import DINOHead

    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 16))
    encoder.output_dim = 16
    method = DINO(encoder, DINOHead(16, 10, 32, 8), DINOLoss(10), freeze_last_layer_steps=2)
    batch = {"views": torch.randn(2, 4, 1, 2, 2)}
    for step, frozen in ((1, True), (2, False)):
        method.zero_grad()
        method(batch).loss.backward()
        method.before_optimizer_step(step)
        last = [p for p in method.student[1].last_layer.parameters() if p.requires_grad]
        assert all((p.grad is None) == frozen for p in last)
        assert method.student[1].mlp[0].weight.grad is not None
    with pytest.raises(ValueError, match="freeze_last_layer_steps must be a non-negative int"):
        DINO(encoder, DINOHead(16, 10, 32, 8), DINOLoss(10), freeze_last_layer_steps=-1)
