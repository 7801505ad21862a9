"""Time and peak memory of one forward + backward pass of InfoNCE losses, ours against the field's.

    python benchmarks/loss_memory.py                      # the default grid; markdown tables on stdout
    python benchmarks/loss_memory.py --batch-sizes 1024 4096 --dims 128 --time-budget 20
    python benchmarks/loss_memory.py --device cuda        # the same tables on a GPU

Two families, each on identical inputs (``B`` pairs of ``d``-dimensional
float32 embeddings with gradients):

- NT-Xent (SimCLR, temperature 0.5, 2B rows): our ``NTXent`` plain
  (``block_size=None``) and tiled, lightly's ``NTXentLoss``,
  pytorch-metric-learning's ``NTXentLoss`` (labels ``arange(B)`` twice);
- CLIP (learnable logit scale starting at 1/0.07, B rows): our ``CLIPLoss``
  plain and tiled, open_clip's ``ClipLoss`` (fed the L2-normalised inputs:
  open_clip normalises in the model, ours in the loss).

Memory: every (loss, B, d) runs once in a fresh subprocess, so no allocator
cache or earlier case can hide memory. It first runs on 8 rows, so that code
pages and one-time set-up do not count, then records the increase of the
peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``)
over one full-size forward + backward on the CPU, of
``torch.cuda.max_memory_allocated`` on a GPU. The subprocess caps its address
space (GPU: its memory fraction) at ``--memory-cap-gib`` above the baseline,
so a loss that needs more shows as ``OOM (> cap)``.

Time: when the memory runs of a row took less than 10 s each, the losses
that fit are timed again in one subprocess, round-robin (one run of each in
turn, so that load from other programs falls on all of them alike), for up to
five rounds while the rounds take less than 5 s, and the table shows each
loss's fastest run; slower rows keep the time of their memory runs, which ran
back to back.

A case whose time, extrapolated as B² from the last B of the same loss,
exceeds ``--time-budget`` seconds is ``skipped`` - unless its memory,
extrapolated likewise, exceeds the cap: then it runs, to show the
out-of-memory. All losses of a row must agree on the loss value (checked, to
1e-4 relative). The tiled losses' throughput is ``8 N M D / time`` (forward
product, its recomputation, two gradient products) and its fraction of the
rate of the tiles' own product ``(block, d) x (d, block)``, measured in the
same process right after the tiled loss.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

FAMILIES = {
    "NT-Xent": ("ours plain", "ours tiled", "lightly", "pytorch-metric-learning"),
    "CLIP": ("ours plain", "ours tiled", "open_clip"),
}
PEERS = {"lightly", "pytorch-metric-learning", "open_clip"}
GIB = 2**30


# ----------------------------------------------------------------------------- inside the subprocesses


def _loss_step(family: str, name: str, a, b, block_size: int) -> Callable[[], object]:  # noqa: ANN001
    """The closure computing one implementation's scalar loss of ``a, b`` (B, d)."""
    import torch
    import torch.nn.functional as F

    device = a.device
    if family == "NT-Xent":
        if name.startswith("ours"):
            from contrastive_seq.losses import NTXent

            ours = NTXent(temperature=0.5, block_size=block_size if name == "ours tiled" else None).to(device)
            return lambda: ours(torch.stack([a, b])).loss
        if name == "lightly":
            from lightly.loss import NTXentLoss

            lightly_loss = NTXentLoss(temperature=0.5)
            return lambda: lightly_loss(a, b)
        from pytorch_metric_learning.losses import NTXentLoss

        pml_loss = NTXentLoss(temperature=0.5)
        labels = torch.arange(a.shape[0], device=device).repeat(2)
        return lambda: pml_loss(torch.cat([a, b]), labels)
    if name.startswith("ours"):
        from contrastive_seq.losses import CLIPLoss

        clip = CLIPLoss(temperature=0.07, block_size=block_size if name == "ours tiled" else None).to(device)
        return lambda: clip(a, b).loss
    from open_clip.loss import ClipLoss

    open_clip_loss = ClipLoss()
    logit_scale = torch.nn.Parameter(torch.tensor(1 / 0.07, device=device))
    return lambda: open_clip_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1), logit_scale)


def logit_rows(family: str, batch: int) -> int:
    """Rows (= columns) of the logit matrix of ``batch`` pairs: 2B for NT-Xent, B for CLIP."""
    return 2 * batch if family == "NT-Xent" else batch


def _inputs(rows: int, d: int, device: str, seed: int = 0) -> list:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, d, generator=generator).to(device).requires_grad_() for _ in range(2)]


def _timed(step: Callable[[], object], inputs: list, device: str) -> tuple[float, float]:
    """Seconds of one forward + backward, and the loss value."""
    import torch

    for x in inputs:
        x.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = step()
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, float(loss)


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field_name}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


class _PeakMemory:
    """Peak memory above the state at construction (resident set on the CPU, allocator on a GPU), under a cap."""

    def __init__(self, device: str, cap_bytes: int):
        import torch

        self.device = device
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, (self.baseline + cap_bytes) / total))
        else:
            import resource

            self.baseline = _status_kib("VmRSS") * 1024
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # the peak resident set restarts from the current one
            limit = _status_kib("VmSize") * 1024 + cap_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def peak(self) -> int:
        import torch

        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() - self.baseline
        return _status_kib("VmHWM") * 1024 - self.baseline


def memory_case(case: dict) -> dict:
    """One loss at one (B, d) in this fresh process: status, peak bytes, seconds and loss value of one run."""
    import torch

    torch.set_num_threads(case["threads"])
    family, name, block_size, device = case["family"], case["name"], case["block_size"], case["device"]
    small = _inputs(8, case["d"], device, seed=1)
    _timed(_loss_step(family, name, *small, block_size), small, device)
    inputs = _inputs(case["B"], case["d"], device)
    step = _loss_step(family, name, *inputs, block_size)
    memory = _PeakMemory(device, int(case["cap_gib"] * GIB))
    try:
        seconds, value = _timed(step, inputs, device)
    except (RuntimeError, MemoryError) as error:  # the allocator's out-of-memory under the cap
        if isinstance(error, MemoryError) or "memory" in str(error).lower():
            return {"status": "oom"}
        raise
    result = {"status": "ok", "peak": memory.peak(), "seconds": seconds, "loss": value}
    if name == "ours tiled":
        result["rate"] = tile_matmul_rate(case["d"], min(block_size, logit_rows(family, case["B"])), device)
    return result


def timing_row(row: dict) -> dict:
    """The fastest of interleaved runs of each loss of a row: up to 5 rounds while they take under 5 s.

    With the tiled loss in the row, each round also measures the tiles' matrix-multiply rate (key ``"rate"``).
    """
    import torch

    torch.set_num_threads(row["threads"])
    device, names = row["device"], row["names"]
    inputs = _inputs(row["B"], row["d"], device)
    steps = {name: _loss_step(row["family"], name, *inputs, row["block_size"]) for name in names}
    runs: dict[str, list[float]] = {name: [] for name in steps}
    rates = []
    started = time.perf_counter()
    while not runs[names[0]] or (len(runs[names[0]]) < 5 and time.perf_counter() - started < 5.0):
        for name, step in steps.items():
            runs[name].append(_timed(step, inputs, device)[0])
            if name == "ours tiled":
                tile = min(row["block_size"], logit_rows(row["family"], row["B"]))
                rates.append(tile_matmul_rate(row["d"], tile, device))
    return {"seconds": {name: min(times) for name, times in runs.items()}, "rate": max(rates, default=None)}


def tile_matmul_rate(d: int, block: int, device: str) -> float:
    """FLOP/s of the tiles' product, (block, d) x (d, block) in float32: the best of 3 rounds of 10."""
    import torch

    x, y = torch.randn(block, d, device=device), torch.randn(d, block, device=device)
    out = torch.empty(block, block, device=device)
    best = float("inf")
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            torch.mm(x, y, out=out)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * block * block * d / best


# ----------------------------------------------------------------------------- the grid (parent process)


@dataclass
class Result:
    """One loss at one (B, d): ``status`` is ok, oom, skipped, timeout or error."""

    status: str
    seconds: float = float("nan")
    peak: int = 0
    loss: float = float("nan")
    rate: float = float("nan")  # the tiles' matrix-multiply FLOP/s, for the tiled loss
    note: str = ""


@dataclass
class Settings:
    device: str
    threads: int
    block_size: int
    cap_gib: float
    time_budget: float


def _subprocess(arguments: list[str], timeout: float) -> tuple[int | None, str, str]:
    """Run this file with ``arguments``; ``(None, "", "")`` on timeout."""
    try:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *arguments], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None, "", ""
    return done.returncode, done.stdout, done.stderr


def _json_result(code: int | None, out: str, err: str, timeout: float) -> dict:
    if code is None:
        return {"status": "timeout", "note": f"> {timeout:.0f} s"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:  # killed by the kernel, with no room even under the cap, counts as out of memory
        last_line = (err.strip().splitlines() or ["?"])[-1][:120]
        return {"status": "oom" if code in (-9, 137) else "error", "note": last_line}
    return json.loads(lines[-1])


def extrapolate(history: list[tuple[int, Result]], batch: int) -> tuple[float, float]:
    """Expected (seconds, peak bytes) at ``batch`` from the measured smaller batches of one loss.

    Time grows as B² (the logits); memory as B to the power fitted on the last
    two measurements (clamped to [1, 3]: linear for tiles, quadratic for logits,
    cubic for pytorch-metric-learning's pair tensors), B² with one measurement.
    """
    if not history:
        return 0.0, 0.0
    last_batch, last = history[-1]
    exponent = 2.0
    if len(history) > 1 and history[-2][1].peak > 0 < last.peak:
        first_batch, first = history[-2]
        exponent = min(3.0, max(1.0, math.log(last.peak / first.peak) / math.log(last_batch / first_batch)))
    growth = batch / last_batch
    return last.seconds * growth**2, last.peak * growth**exponent


def measure_row(
    family: str, batch: int, d: int, settings: Settings, history: dict[str, list[tuple[int, Result]]]
) -> dict[str, Result]:
    """Memory of each loss in its own process, then interleaved times of those that fit."""
    common = {"family": family, "B": batch, "d": d, "block_size": settings.block_size}
    common.update(device=settings.device, threads=settings.threads)
    results = {}
    for name in FAMILIES[family]:
        estimate, memory = extrapolate(history.get(name, []), batch)
        expect_oom = memory > settings.cap_gib * GIB
        if estimate > settings.time_budget and not expect_oom:
            results[name] = Result("skipped", note=f"≈{estimate:.0f} s")
            continue
        case = {**common, "name": name, "cap_gib": settings.cap_gib}
        timeout = settings.time_budget + 60 if expect_oom else max(3 * settings.time_budget, 2 * estimate) + 60
        results[name] = Result(**_json_result(*_subprocess(["--memory-case", json.dumps(case)], timeout), timeout))
    fitting = [name for name, result in results.items() if result.status == "ok"]
    if len(fitting) > 1 and max(results[name].seconds for name in fitting) < 10.0:
        timeout = 10 * sum(results[name].seconds for name in fitting) + 120
        row = ["--timing-row", json.dumps({**common, "names": fitting})]
        timing = _json_result(*_subprocess(row, timeout), timeout)
        if "status" in timing:
            raise SystemExit(f"timing {family} B={batch} d={d} failed: {timing}")
        for name in fitting:
            results[name].seconds = timing["seconds"][name]
        if timing["rate"] is not None:
            results["ours tiled"].rate = timing["rate"]
    for name in fitting:
        history.setdefault(name, []).append((batch, results[name]))
    return results


def format_row(family: str, batch: int, d: int, results: dict[str, Result], settings: Settings) -> str:
    def cell(result: Result) -> str:
        if result.status == "ok":
            return f"{result.seconds:.3g} s · {result.peak / GIB:.3g} GiB"
        if result.status == "oom":
            return f"OOM (> {settings.cap_gib:g} GiB)"
        return f"{result.status} ({result.note})" if result.note else result.status

    def ratio(numerator: Result, denominator: Result, attribute: str) -> str:
        if numerator.status != "ok" or denominator.status != "ok":
            return "–"
        return f"{getattr(numerator, attribute) / getattr(denominator, attribute):.2f}×"

    plain, tiled = results["ours plain"], results["ours tiled"]
    peers = [results[n] for n in FAMILIES[family] if n in PEERS and results[n].status == "ok"]
    fastest_peer = min(peers, key=lambda r: r.seconds, default=Result("none"))
    throughput = "–"
    if tiled.status == "ok":
        achieved = 8 * logit_rows(family, batch) ** 2 * d / tiled.seconds
        throughput = f"{achieved / 1e9:.0f} ({100 * achieved / tiled.rate:.0f}%)"
    cells = [f"{batch:,}", str(d), *(cell(results[n]) for n in FAMILIES[family])]
    cells += [
        ratio(plain, fastest_peer, "seconds"),
        ratio(tiled, plain, "seconds"),
        ratio(tiled, plain, "peak"),
        throughput,
    ]
    return "| " + " | ".join(cells) + " |"


def loss_disagreements(family: str, batch: int, d: int, results: dict[str, Result]) -> list[str]:
    ok = {name: result for name, result in results.items() if result.status == "ok"}
    reference = ok.get("ours plain") or ok.get("ours tiled")
    return [
        f"{family} B={batch} d={d}: {name} {result.loss} vs {reference.loss}"
        for name, result in ok.items()
        if abs(result.loss - reference.loss) > 1e-4 * abs(reference.loss)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--block-size", type=int, default=None, help="tiles of the tiled losses (1024 CPU, 8192 GPU)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in every case")
    parser.add_argument("--memory-cap-gib", type=float, default=8.0)
    parser.add_argument("--time-budget", type=float, default=45.0, help="skip cases extrapolated beyond this (s)")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--timing-row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(json.loads(args.memory_case))))
        return
    if args.timing_row:
        print(json.dumps(timing_row(json.loads(args.timing_row))))
        return
    block_size = args.block_size or (8192 if args.device == "cuda" else 1024)
    settings = Settings(args.device, args.threads, block_size, args.memory_cap_gib, args.time_budget)
    started = time.perf_counter()
    print(
        f"device {args.device}, {args.threads} thread(s), tiles of {block_size}, "
        f"memory cap {args.memory_cap_gib:g} GiB, time budget {args.time_budget:g} s"
    )
    disagreements = []
    for family in args.families:
        header = ["B", "d", *FAMILIES[family], "plain ÷ fastest peer (time)", "tiled ÷ plain (time)"]
        header += ["tiled ÷ plain (memory)", "tiled GFLOP/s (% of matmul)"]
        print(f"\n### {family}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        history: dict[int, dict[str, list[tuple[int, Result]]]] = {d: {} for d in args.dims}
        for batch in args.batch_sizes:
            for d in args.dims:
                results = measure_row(family, batch, d, settings, history[d])
                disagreements += loss_disagreements(family, batch, d, results)
                print(format_row(family, batch, d, results, settings), flush=True)
    print(f"\nloss values agree across implementations: {'yes' if not disagreements else 'NO'}")
    for line in disagreements:
        print("  " + line)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
