"""A tiny seeded training job that can die on purpose; driven by tests/test_fault_tolerance.py.

Under torchrun (``python -m torch.distributed.run --nproc_per_node 2
--max-restarts 1 tests/fault_tolerance_job.py ...``) every rank runs the same
job; alone it runs on one process. Each named run trains a linear autoencoder
with dropout (so the global random streams matter on resume) on 64 noisy
points, writing checkpoints to its directory and resuming from them.

- ``--straight DIR``: a run that is never interrupted.
- ``--crashing DIR --crash-rank R --crash-step N --flag FILE``: rank R
  ``os._exit(1)``s right after optimiser step N, once: it creates FILE
  first, and a restarted job that finds FILE goes on.
- ``--kill-at-save K``: the K-th ``torch.save`` of this process writes half
  of its bytes and then the process SIGKILLs itself, mid-write.
- ``--freeze-rank R --freeze-step N``: rank R stops itself (SIGSTOP) right
  after optimiser step N, as a hung process would; ``--collective-timeout S``
  sets ``TrainerConfig.collective_timeout``.

Rank 0 of each run records the steps it trained in
``DIR/attempt<TORCHELASTIC_RESTART_COUNT>.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
from pathlib import Path

import torch
from torch import nn

from contrastive_seq.data import ArrayDataset
from contrastive_seq.losses.output import LossOutput
from contrastive_seq.methods.base import Method
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views import TransformedViews
from shared_checks import leaving_process_group  # this script runs from tests/

NUM_ITEMS, DIM = 64, 4


class DroppingAutoencoder(Method):
    """Reconstructs view 1 from view 0 through a 2-d code with dropout; may exit after one step, once.

    The initial weights are always the same (seed 0).
    """

    def __init__(self, crash_step: int | None = None, flag: Path | None = None, freeze_step: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(DIM, 2)
        self.dropout = nn.Dropout(0.2)
        self.decoder = nn.Linear(2, DIM)
        self.crash_step = crash_step
        self.flag = flag
        self.freeze_step = freeze_step
        self.steps_seen: list[int] = []

    def training_step(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        views = batch["views"]  # (2, N, DIM)
        error = (self.decoder(self.dropout(self.encoder(views[0]))) - views[1]).pow(2).sum(-1)  # (N,)
        return LossOutput(error.mean(), {})

    def after_step(self, step: int) -> None:
        self.steps_seen.append(step)
        if step == self.crash_step and not self.flag.exists():
            self.flag.touch()
            os._exit(1)  # a lost process: no exception, no clean-up
        if step == self.freeze_step:
            os.kill(os.getpid(), signal.SIGSTOP)  # a frozen process: alive, holding its sockets, answering nothing

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def add_noise(sample: torch.Tensor) -> torch.Tensor:
    return sample + 0.05 * torch.randn_like(sample)


def make_dataset() -> ArrayDataset:
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(NUM_ITEMS, 2, generator=generator)
    return ArrayDataset(latent @ torch.randn(2, DIM, generator=generator))


def make_trainer(output_dir: Path, method: DroppingAutoencoder | None = None, **config: object) -> Trainer:
    """A Trainer on the job's data; ``config`` overrides the defaults (12 steps, a checkpoint every 4)."""
    settings = dict(max_steps=12, checkpoint_every=4, batch_size=8, lr=0.05, log_every=1, device="cpu", progress=False)
    settings.update(config)
    return Trainer(
        method if method is not None else DroppingAutoencoder(),
        TrainerConfig(output_dir=output_dir, **settings),
        make_dataset(),
        AugmentationSampler(NUM_ITEMS),
        TransformedViews(add_noise),
    )


def die_at_save(count: int) -> None:
    """Make the ``count``-th ``torch.save`` write half its bytes, flush them and SIGKILL this process."""
    real_save = torch.save
    calls = 0

    def dying_save(obj: object, file: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls < count:
            return real_save(obj, file, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        file.write(buffer.getvalue()[: buffer.tell() // 2])
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save


def run(
    output_dir: Path,
    crash_rank: int | None,
    crash_step: int | None,
    flag: Path | None,
    freeze: tuple[int | None, int | None] = (None, None),
    **config: object,
) -> None:
    rank = int(os.environ.get("RANK", "0"))
    freeze_rank, freeze_step = freeze
    method = DroppingAutoencoder(crash_step if rank == crash_rank else None, flag, freeze_step if rank == freeze_rank else None)
    trainer = make_trainer(output_dir, method, **config)
    trainer.fit()
    if trainer.rank == 0:
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        (output_dir / f"attempt{attempt}.json").write_text(json.dumps(method.steps_seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--straight", type=Path)
    parser.add_argument("--crashing", type=Path)
    parser.add_argument("--crash-rank", type=int)
    parser.add_argument("--crash-step", type=int)
    parser.add_argument("--flag", type=Path)
    parser.add_argument("--kill-at-save", type=int)
    parser.add_argument("--freeze-rank", type=int)
    parser.add_argument("--freeze-step", type=int)
    parser.add_argument("--collective-timeout", type=float, default=300.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.kill_at_save is not None:
        die_at_save(args.kill_at_save)
    with leaving_process_group():  # on an error (a lost peer) the group is destroyed at once, before the exit
        if args.straight is not None:
            run(args.straight, None, None, None)
        if args.crashing is not None:
            run(
                args.crashing, args.crash_rank, args.crash_step, args.flag, (args.freeze_rank, args.freeze_step),
                collective_timeout=args.collective_timeout,
            )  # fmt: skip


if __name__ == "__main__":
    main()
