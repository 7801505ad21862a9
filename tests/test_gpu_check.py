"""The GPU check runs unchanged on the CPU at toy sizes and prints one row per measurement."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_the_cpu_at_tiny_sizes_and_prints_one_table(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = gpu_check  # its dataclass looks its module up there
    spec.loader.exec_module(gpu_check)
    table = gpu_check.main(["--cpu", "--tiny"])
    assert capsys.readouterr().out.strip().endswith(table.strip().splitlines()[-1])
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == 6 + 1 + 4 + 1  # CLIP 2 batches x 3 variants, SimCLR, 4 losses, the place-cell job
    assert all("steps/s" in row for row in rows[:7]) and all("ms fwd+bwd" in row for row in rows[7:11])
    assert "position R2" in rows[11] and "skipped" not in table and "out of memory" not in table
