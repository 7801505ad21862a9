"""``contrastive-seq train`` under torchrun: two gloo ranks on the CPU train, report, and exit cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from contrastive_seq.training import load_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "simclr_digits.yaml"


def torchrun_train(output_dir: Path) -> subprocess.CompletedProcess:
    """Two ranks of ``python -m contrastive_seq train`` on the digits config, shortened to 6 steps of 32 per rank."""
    overrides = [
        "train.max_steps=6", "train.batch_size=32", "train.warmup_steps=0", "train.num_workers=0",
        "train.progress=false", f"train.output_dir={output_dir}", "evaluation.label_draws=1",
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "contrastive_seq", "train", str(CONFIG), *overrides],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_two_ranks_train_report_and_leave_cleanly_also_when_already_finished(tmp_path):
    first = torchrun_train(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["step"] == 6 and len(checkpoint["rng"]) == 2  # one random state per rank
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records][-1] == 6
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"raw inputs", "random encoder", "simclr (trained)"}
    assert first.stdout.count("simclr (trained)") == 1  # rank 0 alone reports
    # every rank finds the final checkpoint and exits at once: the case that raced in gloo's teardown
    again = torchrun_train(tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
