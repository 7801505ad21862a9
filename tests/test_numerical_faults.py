"""A NaN or infinite loss: the Trainer stops with the step, its batch indices and the last checkpoint, or skips it."""

from __future__ import annotations

import json
import os
import re
import warnings
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
from contrastive_seq.seeding import generator_for
from contrastive_seq.training import NonFiniteLossError, Trainer, TrainerConfig, load_checkpoint
from contrastive_seq.views import TransformedViews

NUM_ITEMS, DIM, BATCH = 32, 3, 8


class PoisonedAutoencoder(Method):
    """A linear autoencoder whose loss is multiplied by ``poison`` at the forward calls in ``poisoned_calls``.

    Records the parameters at the start of every forward call and the steps ``after_step`` saw.
    """

    def __init__(self, poisoned_calls: set[int] = frozenset(), poison: float = float("nan"), rank: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(DIM, 2)
        self.decoder = nn.Linear(2, DIM)
        self.poisoned_calls, self.poison, self.rank = set(poisoned_calls), poison, rank
        self.calls = 0
        self.parameters_at_call: list[list[torch.Tensor]] = []
        self.steps_seen: list[int] = []

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        self.parameters_at_call.append([parameter.detach().clone() for parameter in self.parameters()])
        views = batch["views"]  # (2, N, DIM)
        loss = (self.decoder(self.encoder(views[0])) - views[1]).pow(2).sum(-1).mean()
        poisoned = self.calls in self.poisoned_calls and (self.rank is None or self.rank == dist.get_rank())
        self.calls += 1
        return LossOutput(loss * self.poison if poisoned else loss, {})

    def after_step(self, step: int) -> None:
        self.steps_seen.append(step)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def make_trainer(method: PoisonedAutoencoder, **config: object) -> Trainer:
    settings = dict(max_steps=10, batch_size=BATCH, lr=0.05, log_every=1, device="cpu", progress=False)
    settings.update(config)
    inputs = torch.randn(NUM_ITEMS, DIM, generator=torch.Generator().manual_seed(1))
    return Trainer(
        method, TrainerConfig(**settings), ArrayDataset(inputs), AugmentationSampler(NUM_ITEMS), TransformedViews()
    )


def same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_stop_names_the_step_the_batch_indices_and_the_last_good_checkpoint(tmp_path, poison):
    method = PoisonedAutoencoder({5}, poison)
    trainer = make_trainer(method, checkpoint_every=4, output_dir=tmp_path, on_nonfinite="stop")
    with pytest.raises(NonFiniteLossError) as raised:
        trainer.fit()
    error = raised.value
    assert isinstance(error, FloatingPointError)
    checkpoint = tmp_path / "checkpoint.pt"
    assert error.step == 5 and error.checkpoint == checkpoint
    expected = AugmentationSampler(NUM_ITEMS).sample(BATCH, generator_for(0, 5))  # the sampler's draw for step 5
    assert torch.equal(error.pairs.reference, expected.reference)
    assert torch.equal(error.pairs.positive, expected.positive)
    message = str(error)
    assert "step 5" in message and str(checkpoint) in message
    assert re.search(rf"reference \({BATCH},\) \[ *" + " +".join(map(str, expected.reference[:5].tolist())), message)
    assert method.steps_seen == [0, 1, 2, 3, 4]
    assert same(method.parameters_at_call[5], list(method.parameters()))  # no update with the bad loss
    assert load_checkpoint(checkpoint)["step"] == 4


def test_stop_without_a_checkpoint_says_so():
    with pytest.raises(NonFiniteLossError, match="step 0 .*no checkpoint was written") as raised:
        make_trainer(PoisonedAutoencoder({0})).fit()
    assert raised.value.checkpoint is None


def test_stop_after_a_resume_points_at_the_checkpoint_it_resumed_from(tmp_path):
    make_trainer(PoisonedAutoencoder(), max_steps=3, output_dir=tmp_path).fit()
    resumed = make_trainer(PoisonedAutoencoder({1}), max_steps=10, output_dir=tmp_path)
    with pytest.raises(NonFiniteLossError) as raised:
        resumed.fit()
    assert raised.value.step == 4 and raised.value.checkpoint == tmp_path / "checkpoint.pt"


def test_skip_leaves_weights_and_optimiser_alone_and_counts_the_steps(tmp_path):
    method = PoisonedAutoencoder({3, 7})
    trainer = make_trainer(method, output_dir=tmp_path, on_nonfinite="skip", warmup_steps=2)
    with pytest.warns(RuntimeWarning, match="skipped") as caught:
        final = trainer.fit()
    skips = [str(warning.message) for warning in caught if "skipped" in str(warning.message)]
    assert len(skips) == 2 and "at step 3 " in skips[0] and "at step 7 " in skips[1]
    assert trainer.skipped_steps == 2 and final["skipped_steps"] == 2
    assert method.steps_seen == [0, 1, 2, 4, 5, 6, 8, 9]  # no after_step (EMA, queue) for a skipped step
    for call in range(9):
        assert same(method.parameters_at_call[call], method.parameters_at_call[call + 1]) == (call in (3, 7)), call
    for state in trainer.optimizer.state.values():
        assert int(state["step"]) == 8  # AdamW took 8 steps, not 10
    assert trainer.scheduler.last_epoch == 10  # the schedule follows the step count
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["skipped_steps"] for record in records] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert [record["loss"] is None for record in records] == [done in (4, 8) for done in range(1, 11)]  # NaN -> null
    assert load_checkpoint(tmp_path / "checkpoint.pt")["skipped_steps"] == 2


class NormalisedAutoencoder(PoisonedAutoencoder):
    """Batch norm on the code; a poisoned call feeds NaN inputs through it, so its running statistics see NaN.

    Records the buffers (running mean, variance, batch count) at the start of every forward call.
    """

    def __init__(self, poisoned_calls: set[int]):
        super().__init__(poisoned_calls)
        self.norm = nn.BatchNorm1d(2)
        self.buffers_at_call: list[list[torch.Tensor]] = []

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        self.buffers_at_call.append([buffer.clone() for buffer in self.buffers()])
        views = batch["views"]  # (2, N, DIM)
        inputs = views[0] * float("nan") if self.calls in self.poisoned_calls else views[0]
        self.calls += 1
        return LossOutput((self.decoder(self.norm(self.encoder(inputs))) - views[1]).pow(2).sum(-1).mean(), {})


def test_skip_restores_the_running_statistics_the_bad_forward_pass_changed():
    method = NormalisedAutoencoder({3})
    with pytest.warns(RuntimeWarning, match="at step 3 .*skipped"):
        make_trainer(method, max_steps=6, on_nonfinite="skip").fit()
    assert same(method.buffers_at_call[3], method.buffers_at_call[4])  # as if call 3 never ran
    assert not same(method.buffers_at_call[2], method.buffers_at_call[3])  # good steps do update them
    assert int(method.norm.num_batches_tracked) == 5
    assert all(buffer.isfinite().all() for buffer in method.buffers())
    method.eval()
    assert method.norm(method.embed(torch.randn(4, DIM))).isfinite().all()


def test_skipped_count_survives_a_resume(tmp_path):
    first = make_trainer(PoisonedAutoencoder({1}), max_steps=4, output_dir=tmp_path, on_nonfinite="skip")
    resumed = make_trainer(PoisonedAutoencoder({2}), max_steps=8, output_dir=tmp_path, on_nonfinite="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first.fit()
        assert resumed.fit()["skipped_steps"] == 2
    assert resumed.method.steps_seen == [4, 5, 7]


def test_unknown_action_is_refused():
    with pytest.raises(ValueError, match=r"TrainerConfig\.on_nonfinite"):
        TrainerConfig(on_nonfinite="ignore")


def _skip_worker(rank: int, port: int, output: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with leaving_process_group():
        method = PoisonedAutoencoder({2}, rank=1)  # only rank 1's loss is NaN at step 2
        trainer = make_trainer(method, max_steps=5, batch_size=4, on_nonfinite="skip")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trainer.fit()
        torch.save(
            {"parameters": list(method.parameters()), "steps": method.steps_seen, "skipped": trainer.skipped_steps},
            output / f"rank{rank}.pt",
        )


def test_a_nan_on_one_rank_is_skipped_by_every_rank(tmp_path):
    context = mp.spawn(_skip_worker, args=(free_port(), tmp_path), nprocs=2, join=False)
    join_ranks(context)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for result in results:
        assert result["steps"] == [0, 1, 3, 4] and result["skipped"] == 1
    assert same(results[0]["parameters"], results[1]["parameters"])
