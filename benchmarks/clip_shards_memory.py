"""CLIP trained on WebDataset shards of 10⁵ and of 10⁶ pairs: the run's memory over its steps.

    python benchmarks/clip_shards_memory.py --pairs 100000 1000000 --steps 400 --workers 2

Uses the synthetic shards of ``benchmarks/shards_scale.py`` (16×16 PNG images,
short captions, written under ``--cache`` if absent) and trains the model of
``configs/own_data/clip_image_text_shards.yaml`` (its images resized to 32×32) with
``contrastive-seq train`` in a child process: batch 256, ``--workers``
DataLoader workers, held-out pairs from a separate shard of 500 (zero-shot
retrieval before and after training). Every 0.5 s the summed ``Rss`` and
``Pss`` of the run's processes (the trainer and its workers) and the trainer's own ``Pss`` are read with the
last step it logged (every 10 steps); printed per size: the peak over steps
0–100 and over the steps after 100 up to the end of training (the final
evaluation included), the training steps per second, and the seconds from
start to the first logged step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shards_scale import _memory_kib, write_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "own_data" / "clip_image_text_shards.yaml"


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return tree


def last_step(metrics: Path) -> int:
    """The last step the run logged (0 before the first)."""
    try:
        lines = metrics.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def train_and_watch(shards: str, test_shards: str, steps: int, workers: int, output_dir: Path) -> dict[str, float]:
    """One run of ``contrastive-seq train`` on ``shards``, its memory sampled every 0.5 s."""
    command = [sys.executable, "-m", "contrastive_seq", "train", str(CONFIG), f"data.shards={shards}",
               f"data.test_shards={test_shards}", "encoder.context_length=16", f"train.max_steps={steps}", "train.batch_size=256",
               "train.warmup_steps=20", "train.log_every=10", f"train.num_workers={workers}",
               "train.progress=false", f"train.checkpoint_every={steps}", f"train.output_dir={output_dir}"]
    start = time.perf_counter()
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, first_logged = [], None
    while run.poll() is None:
        step = last_step(output_dir / "metrics.jsonl")
        if step and first_logged is None:
            first_logged = time.perf_counter() - start
        pids = process_tree(run.pid)
        samples.append((step, sum(_memory_kib(p, ("Rss",)) for p in pids) / 1024,
                        sum(_memory_kib(p, ("Pss",)) for p in pids) / 1024, _memory_kib(run.pid, ("Pss",)) / 1024))
        time.sleep(0.5)
    if run.returncode:
        raise RuntimeError(f"the run failed ({run.returncode}): {run.stderr.read()[-2000:]}")
    rates = [json.loads(line)["samples_per_s"] for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    figures = {"seconds_to_first_logged_step": first_logged, "samples_per_s_at_end": rates[-1],
               "memory_samples": len(samples)}
    for part, rows in (("to_100", [s for s in samples if 0 < s[0] <= 100]), ("after_100", [s for s in samples if s[0] > 100])):
        figures[f"peak_rss_mib_{part}"] = max((row[1] for row in rows), default=float("nan"))
        figures[f"peak_pss_mib_{part}"] = max((row[2] for row in rows), default=float("nan"))
        figures[f"peak_trainer_pss_mib_{part}"] = max((row[3] for row in rows), default=float("nan"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("data/shards_scale"))
    args = parser.parse_args()
    test_shards = write_pairs(args.cache / "test500", 500)
    for pairs in args.pairs:
        shards = write_pairs(args.cache / str(pairs), pairs)
        with tempfile.TemporaryDirectory() as folder:
            figures = train_and_watch(shards, test_shards, args.steps, args.workers, Path(folder) / "run")
        print(json.dumps({"pairs": pairs, **figures}), flush=True)


if __name__ == "__main__":
    main()
