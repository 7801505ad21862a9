"""One table of the library's speed and memory on one GPU (or, with ``--cpu --tiny``, a seconds-long smoke run).

    bash benchmarks/gpu_check.sh                 # CUDA, the full sizes, at most 8 minutes
    python benchmarks/gpu_check.py --cpu --tiny  # the same code on the CPU at toy sizes (what the tests run)

Rows, each measured after warm-up steps (CUDA synchronised around the timed steps):

- CLIP ViT-B/32 (open_clip config ``ViT-B-32``, random weights, 224x224 random
  images, 77-token random captions), bf16 autocast, AdamW: steps per second at
  batch 256 and 1024, plain, tiled (``CLIPLoss(block_size=...)``) and with the
  gradient cache (``CLIP(chunk_size=...)``); peak GPU memory of each;
- SimCLR with a ResNet-18 (3x3 stem for 32x32 images) at batch 512, two views;
- the loss table: one forward + backward of NT-Xent and CLIP, plain and tiled,
  at 16384 pairs of 512 dimensions (the closures of ``loss_memory.py``);
- the place-cell job (``configs/cebra_place_cells.yaml``) on the device: its
  wall time and the trained embedding's position R² and direction accuracy.

A row that would start after ``--budget-s`` seconds is printed as skipped, so
the whole check ends in time. ``--tiny`` shrinks every size (a 1-layer CLIP on
8x8 images, batches of 8 and 16, 64 loss pairs, 2 timed steps, 2,000 time bins
and 5 steps of the place-cell job); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the loss closures of the sibling loss_memory.py
from loss_memory import _inputs, _loss_step, _timed  # noqa: E402

from contrastive_seq.experiments.run import load_experiment_config, run_experiment  # noqa: E402
from contrastive_seq.losses import NTXent  # noqa: E402
from contrastive_seq.losses.clip import CLIPLoss  # noqa: E402
from contrastive_seq.methods.clip import CLIP  # noqa: E402
from contrastive_seq.methods.simclr import SimCLR  # noqa: E402
from contrastive_seq.models import MLPHead  # noqa: E402
from contrastive_seq.models.backbones import image_backbone  # noqa: E402
from contrastive_seq.models.clip_towers import open_clip_towers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


@dataclass
class Sizes:
    """Every size the check uses; :data:`FULL` on a GPU, :data:`TINY` for the smoke run."""

    clip_model: str | None
    clip_batches: tuple[int, ...]
    clip_block: int
    clip_chunk: int
    image_size: int
    simclr_batch: int
    loss_pairs: int
    loss_dim: int
    loss_block: int
    warmup_steps: int
    timed_steps: int
    place_cell_overrides: tuple[str, ...]


FULL = Sizes("ViT-B-32", (256, 1024), 256, 256, 224, 512, 16384, 512, 4096, 3, 10, ())
TINY = Sizes(None, (8, 16), 4, 4, 8, 8, 64, 16, 16, 1, 2,
             ("train.max_steps=5", "data.num_timepoints=2000", "train.log_every=5", "train.checkpoint_every=5"))
TINY_VISION = {"image_size": 8, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16}
TINY_TEXT = {"context_length": 8, "width": 32, "heads": 2, "layers": 1}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    """Peak GPU memory since the last reset, in GiB ("-" on the CPU)."""
    return f"{torch.cuda.max_memory_allocated(device) / GIB:.2f}" if device.type == "cuda" else "-"


def steps_per_second(step: Callable[[], None], device: torch.device, sizes: Sizes) -> float:
    """Rate of ``step`` over ``sizes.timed_steps`` after ``sizes.warmup_steps``."""
    for _ in range(sizes.warmup_steps):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(sizes.timed_steps):
        step()
    _synchronize(device)
    return sizes.timed_steps / (time.perf_counter() - start)


def training_step(method: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> Callable[[], None]:
    """One AdamW step of ``method`` on the fixed ``batch`` under bf16 autocast (what the Trainer does with precision bf16)."""
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            output = method.training_step(batch)
        output.loss.backward()  # with the gradient cache too: its loss's backward gives the whole-batch gradients
        optimizer.step()

    return step


def clip_rows(sizes: Sizes, device: torch.device) -> list[list[str]]:
    """CLIP steps per second and peak memory, plain / tiled / gradient cache, at each batch size."""
    rows = []
    name = sizes.clip_model or "tiny CLIP"
    for batch_size in sizes.clip_batches:
        generator = torch.Generator().manual_seed(0)
        for variant, block, chunk in (("plain", None, None), (f"tiled, block {sizes.clip_block}", sizes.clip_block, None),
                                      (f"gradient cache, chunk {sizes.clip_chunk}", None, sizes.clip_chunk)):
            torch.manual_seed(0)
            if sizes.clip_model:
                image, text = open_clip_towers(sizes.clip_model)
            else:
                image, text = open_clip_towers(None, 16, TINY_VISION, TINY_TEXT)
            method = CLIP(image, text, CLIPLoss(block_size=block), chunk_size=chunk).to(device)
            batch = {
                "image": torch.rand(batch_size, 3, sizes.image_size, sizes.image_size, generator=generator).to(device),
                "text": torch.randint(1, 1000, (batch_size, text.tokenizer.context_length), generator=generator).to(device),
            }
            _reset_peak(device)
            rate = steps_per_second(training_step(method, batch, device), device, sizes)
            rows.append([f"CLIP {name} bf16", f"batch {batch_size}, {variant}", f"{rate:.2f} steps/s", _peak(device)])
            del method, batch
    return rows


def simclr_row(sizes: Sizes, device: torch.device) -> list[str]:
    """SimCLR ResNet-18 (small-image stem) steps per second on two views of 32x32 images."""
    torch.manual_seed(0)
    encoder = image_backbone("resnet18", small_images=True)
    method = SimCLR(encoder, MLPHead(encoder.output_dim, 2048, 128), NTXent(temperature=0.5)).to(device)
    views = torch.rand(2, sizes.simclr_batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    _reset_peak(device)
    rate = steps_per_second(training_step(method, {"views": views}, device), device, sizes)
    return ["SimCLR ResNet-18 32x32 bf16", f"batch {sizes.simclr_batch}, 2 views", f"{rate:.2f} steps/s", _peak(device)]


def loss_rows(sizes: Sizes, device: torch.device) -> list[list[str]]:
    """Milliseconds and peak memory of one forward + backward of our NT-Xent and CLIP losses, plain and tiled (fp32)."""
    rows = []
    for family in ("NT-Xent", "CLIP"):
        for name in ("ours", "ours tiled"):
            inputs = _inputs(sizes.loss_pairs, sizes.loss_dim, device.type)
            step = _loss_step(family, name, *inputs, sizes.loss_block)
            _timed(step, inputs, device.type)  # warm-up
            _reset_peak(device)
            seconds = min(_timed(step, inputs, device.type)[0] for _ in range(max(1, sizes.timed_steps // 2)))
            block = f", block {sizes.loss_block}" if name == "ours tiled" else ""
            rows.append([f"loss {family} fp32", f"{sizes.loss_pairs} pairs x {sizes.loss_dim}{block}",
                         f"{seconds * 1e3:.1f} ms fwd+bwd", _peak(device)])
            del inputs, step
    return rows


def place_cell_row(sizes: Sizes, device: torch.device) -> list[str]:
    """The place-cell job on ``device``: wall seconds and the trained embedding's decoding scores."""
    with tempfile.TemporaryDirectory() as output:
        overrides = [f"train.device={device.type}", "train.progress=false", f"train.output_dir={output}",
                     *sizes.place_cell_overrides]
        config = load_experiment_config(ROOT / "configs" / "cebra_place_cells.yaml", overrides)
        _reset_peak(device)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the job's own table; its scores go into this one
            results = run_experiment(config)
        seconds = time.perf_counter() - start
    trained = results["cebra (trained)"]
    scores = f"position R2 {trained['position_r2']:.3f}, direction {trained['direction_accuracy']:.3f}"
    return ["place-cell job (CEBRA)", f"{config.train.max_steps} steps; {scores}", f"{seconds:.1f} s wall", _peak(device)]


def format_table(rows: list[list[str]]) -> str:
    """A markdown table of ``[check, setting, speed, peak GiB]`` rows."""
    lines = ["| check | setting | speed | peak GPU memory (GiB) |", "|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> str:
    """Run every check that fits in the budget; print and return the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (default: CUDA, which must be present)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: a smoke run of every row in seconds")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no row after this many seconds")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device is visible; pass --cpu (with --tiny for a smoke run)")
    device = torch.device("cpu" if args.cpu else "cuda")
    sizes = TINY if args.tiny else FULL
    start = time.perf_counter()
    checks: list[tuple[str, Callable[[], list[list[str]]]]] = [
        ("CLIP", lambda: clip_rows(sizes, device)),
        ("SimCLR", lambda: [simclr_row(sizes, device)]),
        ("losses", lambda: loss_rows(sizes, device)),
        ("place-cell job", lambda: [place_cell_row(sizes, device)]),
    ]
    rows: list[list[str]] = []
    for name, check in checks:
        if time.perf_counter() - start > args.budget_s:
            rows.append([name, "skipped: over the time budget", "-", "-"])
            continue
        try:
            rows.extend(check())
        except torch.OutOfMemoryError as error:
            rows.append([name, f"out of memory: {str(error).splitlines()[0][:80]}", "-", "-"])
            _reset_peak(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = f"{where}, torch {torch.__version__}, {time.perf_counter() - start:.0f} s\n\n" + format_table(rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
