"""The Trainer: learning, bitwise resume, checkpoints, metrics, schedules, precision and a real 2-process run."""

from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shared_checks import free_port, join_ranks, leaving_process_group
from torch import nn

from contrastive_seq.data import ArrayDataset
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import (
    CheckpointError,
    SampledBatches,
    Trainer,
    TrainerConfig,
    load_checkpoint,
    save_checkpoint,
)
from contrastive_seq.training.metrics import MetricsWriter
from contrastive_seq.training.schedule import lr_factor, lr_lambda
from contrastive_seq.views import TransformedViews

NUM_ITEMS, DIM = 64, 4


class TinyMethod(Method):
    """A linear autoencoder through a 2-d bottleneck that reconstructs view 1 from view 0.

    The loss is the per-sample squared error averaged over the batch, so DDP's
    gradient average over ranks equals the gradient of one process with the
    whole batch. ``after_step`` records its steps; ``crash_at`` makes it raise
    after that step, ``nan_at`` makes the loss NaN at that call.
    """

    def __init__(self, dropout: float = 0.0, crash_at: int | None = None, nan_at: int | None = None):
        super().__init__()
        self.encoder = nn.Linear(DIM, 2)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(2, DIM)
        self.crash_at = crash_at
        self.nan_at = nan_at
        self.calls = 0
        self.steps_seen: list[int] = []
        self.code_dtype: torch.dtype | None = None

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        views = batch["views"]  # (2, N, DIM)
        code = self.encoder(views[0])
        self.code_dtype = code.dtype
        error = (self.decoder(self.dropout(code)) - views[1]).float().pow(2).sum(-1)  # (N,)
        loss = error.mean()
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        self.calls += 1
        return LossOutput(loss, {"code_norm": code.float().norm(dim=-1).mean()})

    def after_step(self, step: int) -> None:
        self.steps_seen.append(step)
        if step == self.crash_at:
            raise RuntimeError("simulated crash")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def add_noise(sample: torch.Tensor) -> torch.Tensor:
    return sample + 0.05 * torch.randn_like(sample)


def make_dataset() -> ArrayDataset:
    """64 points near a random 2-d plane in 4-d."""
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(NUM_ITEMS, 2, generator=generator)
    mixing = torch.randn(2, DIM, generator=generator)
    return ArrayDataset(latent @ mixing + 0.01 * torch.randn(NUM_ITEMS, DIM, generator=generator))


def make_method(**kwargs) -> TinyMethod:
    torch.manual_seed(0)
    return TinyMethod(**kwargs)


def make_trainer(method=None, noise: bool = True, evaluate=None, run_settings=None, **config) -> Trainer:
    settings = dict(max_steps=20, batch_size=16, lr=0.02, log_every=5, device="cpu", progress=False)
    settings.update(config)
    return Trainer(
        method if method is not None else make_method(),
        TrainerConfig(**settings),
        make_dataset(),
        AugmentationSampler(NUM_ITEMS),
        TransformedViews(add_noise if noise else None),
        evaluate=evaluate,
        run_settings=run_settings,
    )


def full_data_loss(method: TinyMethod) -> float:
    inputs = make_dataset().inputs
    with torch.no_grad():
        return float((method.decoder(method.encoder(inputs)) - inputs).pow(2).sum(-1).mean())


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_training_state(first: Trainer, second: Trainer) -> None:
    for (name, a), (_, b) in zip(first.method.state_dict().items(), second.method.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    state_a, state_b = first.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert state_a.keys() == state_b.keys() and state_a
    for index in state_a:
        assert state_a[index].keys() == state_b[index].keys()
        for key in state_a[index]:
            assert torch.equal(state_a[index][key], state_b[index][key]), (index, key)
    assert first.scheduler.state_dict()["_last_lr"] == second.scheduler.state_dict()["_last_lr"]


def test_loss_decreases_and_final_metrics():
    trainer = make_trainer(max_steps=60, lr=0.05)
    before = full_data_loss(trainer.method)
    final = trainer.fit()
    assert full_data_loss(trainer.method) < 0.2 * before
    assert final["step"] == 60 and math.isfinite(final["loss"])
    assert set(final) == {"step", "loss", "parts/code_norm", "lr", "samples_per_s"}


def test_runs_are_seeded_from_the_config_alone():
    """Dropout draws from the global generator, which fit() seeds from config.seed."""
    weights = []
    for seed, outside_seed in [(3, 100), (3, 200), (4, 100)]:
        trainer = make_trainer(make_method(dropout=0.5), max_steps=5, seed=seed)
        torch.manual_seed(outside_seed)
        trainer.fit()
        weights.append(trainer.method.encoder.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_after_step_once_per_step_with_its_index():
    trainer = make_trainer(max_steps=7)
    trainer.fit()
    assert trainer.method.steps_seen == list(range(7))
    assert trainer.step == 7


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_after_crash_is_bitwise_equal_to_a_straight_run(tmp_path, num_workers):
    settings = dict(
        max_steps=100, checkpoint_every=50, log_every=10, warmup_steps=10, min_lr_fraction=0.1,
        grad_clip=1.0, weight_decay=0.01, num_workers=num_workers,
    )  # fmt: skip
    straight = make_trainer(make_method(dropout=0.2), output_dir=tmp_path / "straight", **settings)
    straight.fit()

    crashing = make_trainer(make_method(dropout=0.2, crash_at=65), output_dir=tmp_path / "resumed", **settings)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 50

    resumed = make_trainer(make_method(dropout=0.2), output_dir=tmp_path / "resumed", **settings)
    resumed.fit()
    assert resumed.method.steps_seen == list(range(50, 100))
    assert_same_training_state(straight, resumed)
    # the crashed run logged steps 60 after its last checkpoint: the resumed run replaces them
    def without_timing(records: list[dict]) -> list[dict]:
        return [{key: value for key, value in record.items() if key != "samples_per_s"} for record in records]

    straight_records = read_records(tmp_path / "straight" / "metrics.jsonl")
    assert [record["step"] for record in straight_records] == list(range(10, 101, 10))
    assert without_timing(read_records(tmp_path / "resumed" / "metrics.jsonl")) == without_timing(straight_records)


def test_resume_from_explicit_path_and_from_a_finished_run(tmp_path):
    first = make_trainer(max_steps=6, checkpoint_every=3, output_dir=tmp_path / "a")
    first.fit()
    elsewhere = make_trainer(max_steps=6, output_dir=tmp_path / "b")
    assert elsewhere.fit(resume=tmp_path / "a" / "checkpoint.pt")["step"] == 6
    assert elsewhere.method.steps_seen == []
    assert_same_training_state(first, elsewhere)
    again = make_trainer(max_steps=6, output_dir=tmp_path / "a", evaluate=lambda method: {"score": 1.0})
    assert again.fit() == {"step": 6, "eval/score": 1.0}
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.pt"))):
        make_trainer().fit(resume=tmp_path / "missing.pt")


def test_resuming_with_other_settings_is_refused_naming_each_difference(tmp_path):
    model = {"encoder": {"width": 8, "kinds": ["a", "b"], "vision": {"layers": 2}}, "method": {"temperature": 0.1}}
    make_trainer(max_steps=4, output_dir=tmp_path, run_settings=model).fit()
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    other_model = {"encoder": {**model["encoder"], "kinds": ["a", "c"]}, "method": {"temperature": 0.1}}
    for trainer, differences in (
        (
            make_trainer(max_steps=4, output_dir=tmp_path, run_settings=model, seed=1, lr=0.05),
            ["train.lr: 0.02 -> 0.05", "train.seed: 0 -> 1"],
        ),
        (make_trainer(max_steps=4, output_dir=tmp_path, run_settings=other_model), ["encoder.kinds: ['a', 'b'] -> ['a', 'c']"]),
        (
            make_trainer(
                max_steps=4, output_dir=tmp_path, run_settings={**model, "encoder": {**model["encoder"], "vision": {"layers": 3}}}
            ),
            ["encoder.vision: {'layers': 2} -> {'layers': 3}"],  # a dict-valued field is compared whole
        ),
    ):
        with pytest.raises(CheckpointError, match="written by a run with other settings") as error:
            trainer.fit()
        for difference in differences:
            assert difference in str(error.value)
        assert str(tmp_path) in str(error.value) and trainer.step == 0 and trainer.history == []
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved  # the refused runs wrote nothing over it
    # a field the checkpoint does not hold (added by another library version) is not compared
    newer = {**model, "method": {"temperature": 0.1, "new_field": 1}}
    assert make_trainer(max_steps=4, output_dir=tmp_path, run_settings=newer).fit()["step"] == 4
    # how long, how often and where it runs may change: a longer run with other logging continues
    longer = make_trainer(max_steps=6, output_dir=tmp_path, run_settings=model, log_every=1, checkpoint_every=2)
    assert longer.fit()["step"] == 6
    # an explicit checkpoint path is checked the same way
    with pytest.raises(CheckpointError, match=r"train.batch_size: 16 -> 8"):
        make_trainer(max_steps=6, batch_size=8, run_settings=model).fit(resume=tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["run_settings"] = ["not", "a", "mapping"]
    save_checkpoint(tmp_path / "odd.pt", state)
    with pytest.raises(CheckpointError, match="odd.pt holds a config or run_settings that is not a mapping"):
        make_trainer(max_steps=6).fit(resume=tmp_path / "odd.pt")


def test_checkpoint_loads_with_weights_only(tmp_path):
    trainer = make_trainer(max_steps=4, output_dir=tmp_path)
    trainer.fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"step", "model", "optimizer", "scheduler", "scaler", "skipped_steps", "rng", "config", "run_settings"}
    assert state["step"] == 4 and len(state["rng"]) == 1
    assert set(state["rng"][0]) >= {"torch", "numpy", "python"}
    for name, value in trainer.method.state_dict().items():
        assert torch.equal(state["model"][name], value)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "metrics.jsonl"]


def _fail_mid_write(exception: BaseException):
    """A ``torch.save`` that writes part of the file, then raises ``exception``."""
    real_save = torch.save

    def broken_save(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(10)
        raise exception

    return broken_save


def _fail(exception: BaseException):
    def broken(*args, **kwargs):
        raise exception

    return broken


@pytest.mark.parametrize(
    "target, exception, expected",
    [
        ("torch.save", OSError(errno.ENOSPC, "No space left on device"), OSError),
        ("torch.save", KeyboardInterrupt(), KeyboardInterrupt),
        ("os.replace", OSError(errno.EIO, "Input/output error"), OSError),
    ],
)
def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target, exception, expected):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weight": torch.ones(3)})
    if target == "torch.save":
        monkeypatch.setattr(torch, "save", _fail_mid_write(exception))
    else:
        monkeypatch.setattr(os, "replace", _fail(exception))
    with pytest.raises(expected) as raised:
        save_checkpoint(path, {"step": 2, "weight": torch.zeros(3)})
    if expected is OSError:
        assert str(path) in str(raised.value) and raised.value.errno == exception.errno
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    previous = load_checkpoint(path)
    assert previous["step"] == 1 and torch.equal(previous["weight"], torch.ones(3))


class _Executable:
    def __reduce__(self):
        return (print, ("this ran while loading",))


@pytest.mark.parametrize("content", ["garbage", "truncated", "code", "not a dict"])
def test_unreadable_checkpoint_names_the_path(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    if content == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    elif content == "truncated":
        save_checkpoint(path, {"weight": torch.randn(100)})
        path.write_bytes(path.read_bytes()[:200])
    elif content == "code":
        save_checkpoint(path, {"payload": _Executable()})  # a valid checksum: weights-only loading must refuse it
    else:
        torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        make_trainer().fit(resume=path)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.pt"))):
        load_checkpoint(tmp_path / "none.pt")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1, "model": {"other.weight": torch.ones(1)}})
    with pytest.raises(CheckpointError, match="does not fit"):
        make_trainer(output_dir=tmp_path).fit()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": True}, "batch_size"),
        ({"precision": "fp8"}, "precision"),
        ({"precision": "fp16", "device": "cpu"}, "precision"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"trust_coefficient": 0.0}, "trust_coefficient"),
        ({"decay_norms_and_biases": 1}, "decay_norms_and_biases"),
        ({"schedule": "step"}, "schedule"),
        ({"warmup_steps": 30}, "warmup_steps"),
        ({"min_lr_fraction": 1.5}, "min_lr_fraction"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"momentum": 1.0}, "momentum"),
        ({"log_every": 0}, "log_every"),
        ({"checkpoint_every": -5}, "checkpoint_every"),
        ({"num_workers": -1}, "num_workers"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_config_is_refused_before_training(tmp_path, overrides, field):
    method = make_method()
    with pytest.raises(ValueError, match=rf"TrainerConfig\.{field}\b"):
        make_trainer(method, output_dir=tmp_path, **overrides).fit()
    assert method.calls == 0 and not os.listdir(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of device='auto'")
def test_fp16_on_a_machine_without_cuda_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"TrainerConfig\.precision"):
        make_trainer(precision="fp16", device="auto")
    with pytest.raises(ValueError, match=r"TrainerConfig\.device"):
        make_trainer(device="cuda")


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="method"):
        Trainer(
            nn.Linear(1, 1), TrainerConfig(device="cpu"), make_dataset(), AugmentationSampler(4), TransformedViews()
        )
    with pytest.raises(TypeError, match="sampler"):
        Trainer(make_method(), TrainerConfig(device="cpu"), make_dataset(), object(), TransformedViews())


def test_non_finite_loss_names_the_step():
    trainer = make_trainer(make_method(nan_at=3))
    with pytest.raises(FloatingPointError, match="step 3"):
        trainer.fit()
    assert trainer.method.steps_seen == [0, 1, 2]


def test_metrics_have_one_json_object_per_logged_step(tmp_path):
    seen_modes = []

    def evaluate(method: Method) -> dict[str, float]:
        seen_modes.append(method.training)
        return {"reconstruction": full_data_loss(method)}

    final = make_trainer(max_steps=10, log_every=3, eval_every=4, output_dir=tmp_path, evaluate=evaluate).fit()
    records = read_records(tmp_path / "metrics.jsonl")
    assert [record["step"] for record in records] == [3, 4, 6, 8, 9, 10]
    for record in records:
        if record["step"] in (3, 6, 9, 10):
            assert set(record) >= {"loss", "parts", "lr", "samples_per_s"}
            assert math.isfinite(record["loss"]) and record["samples_per_s"] > 0
            assert set(record["parts"]) == {"code_norm"}
        assert ("eval" in record) == (record["step"] in (4, 8, 10))
    assert seen_modes == [False, False, False]
    assert final["eval/reconstruction"] == records[-1]["eval"]["reconstruction"]
    assert final["loss"] == records[-1]["loss"]


def test_metrics_writer_off_rank_zero_writes_nothing(tmp_path):
    with MetricsWriter(tmp_path / "metrics.jsonl", enabled=False) as writer:
        writer.write({"step": 1, "loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists()


def test_warmup_cosine_schedule_matches_the_formula(tmp_path):
    warmup, total, floor = 10, 100, 0.1

    def expected(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / (total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    factor = lr_lambda(total, warmup, "cosine", floor)
    for step, value in [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (55, 0.55), (100, 0.1)]:
        assert factor(step) == pytest.approx(value) == pytest.approx(expected(step))
    assert lr_factor(70, max_steps=total, warmup_steps=warmup, schedule="constant") == 1.0
    assert lr_factor(3, max_steps=total, warmup_steps=warmup, schedule="constant") == 0.4
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_lambda(10, warmup_steps=11)

    trainer = make_trainer(
        max_steps=total, warmup_steps=warmup, min_lr_fraction=floor, lr=0.01, log_every=9, output_dir=tmp_path
    )
    trainer.fit()
    for record in read_records(tmp_path / "metrics.jsonl"):  # lr of step index record["step"] - 1
        assert record["lr"] == pytest.approx(0.01 * expected(record["step"] - 1), rel=1e-12)


def test_bf16_autocast_on_cpu_runs():
    trainer = make_trainer(max_steps=4, precision="bf16")
    final = trainer.fit()
    assert trainer.method.code_dtype == torch.bfloat16
    assert math.isfinite(final["loss"])
    assert all(parameter.dtype == torch.float32 for parameter in trainer.method.parameters())


def test_sgd_and_constant_schedule_with_progress_bar(capsys):
    final = make_trainer(max_steps=3, optimizer="sgd", schedule="constant", progress=True).fit()
    assert final["lr"] == pytest.approx(0.02)
    assert "train" in capsys.readouterr().err


def test_sampled_batches_is_exported():
    batches = make_trainer().batches
    assert isinstance(batches, SampledBatches) and len(batches) == 20
    assert batches[3]["views"].shape == (2, 16, DIM)


def _ddp_worker(rank: int, port: int, output_dir: Path, steps: int, batch_size: int) -> None:
    """One torchrun-like rank: the Trainer finds RANK / WORLD_SIZE in the environment and joins the gloo group."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    with leaving_process_group():
        trainer = make_trainer(
            noise=False, max_steps=steps, batch_size=batch_size, log_every=1, output_dir=output_dir / "ddp"
        )
        assert trainer.world_size == 2 and trainer.rank == rank
        trainer.fit()
        torch.save(trainer.method.state_dict(), output_dir / f"rank{rank}.pt")
    assert not dist.is_initialized()


def test_two_gloo_processes_match_one_process_with_twice_the_batch(tmp_path):
    steps, batch_size = 5, 8
    context = mp.spawn(_ddp_worker, args=(free_port(), tmp_path, steps, batch_size), nprocs=2, join=False)
    join_ranks(context)

    single = make_trainer(noise=False, max_steps=steps, batch_size=2 * batch_size, log_every=1, output_dir=tmp_path)
    single.fit()
    for rank in range(2):
        weights = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in single.method.state_dict().items():
            torch.testing.assert_close(weights[name], value, rtol=0, atol=1e-5)
    assert len(load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["rng"]) == 2
    ddp_records = read_records(tmp_path / "ddp" / "metrics.jsonl")
    single_records = read_records(tmp_path / "metrics.jsonl")
    assert [record["step"] for record in ddp_records] == list(range(1, steps + 1))
    for ddp_record, single_record in zip(ddp_records, single_records, strict=True):
        assert ddp_record["loss"] == pytest.approx(single_record["loss"], rel=1e-5)
