"""Faults during training: a rank lost under torchrun, a process killed mid-checkpoint, a full disk.

The jobs live in ``fault_tolerance_job.py`` next to this file; processes that
must die for real (``os._exit``, SIGKILL) run it in a subprocess.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from contrastive_seq.distributed import is_collective_failure, unanswering_ranks
from contrastive_seq.training import load_checkpoint

JOB = Path(__file__).with_name("fault_tolerance_job.py")
_spec = importlib.util.spec_from_file_location("fault_tolerance_job", JOB)
job = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(job)

STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "skipped_steps")


def assert_same_state(a: object, b: object, where: str = "state") -> None:
    """Bitwise equality of two checkpoint (sub)states: tensors, containers and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def run_job(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python *args`` in a subprocess; ``timeout`` only stops a hung job (two torchrun attempts of two ranks
    took up to about 115 s on a 2-core machine with a load average of 15, close to the 120 s once allowed)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=environment, cwd=JOB.parent
    )


def test_torchrun_restarts_a_lost_rank_from_the_last_checkpoint_and_ends_bitwise_equal(tmp_path):
    """Rank 1 dies after step 9 (checkpoints at 4 and 8); torchrun restarts both ranks, which resume from 8.

    One job holds both runs, so the comparison costs no extra start-up: the
    straight run finishes first, and on the restart it finds its final checkpoint and does nothing.
    """
    straight, crashing, flag = tmp_path / "straight", tmp_path / "crashing", tmp_path / "crashed-once"
    result = run_job(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
        "--monitor-interval", "0.1", str(JOB),
        "--straight", str(straight), "--crashing", str(crashing),
        "--crash-rank", "1", "--crash-step", "9", "--flag", str(flag),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert flag.exists(), "rank 1 never crashed"
    assert json.loads((crashing / "attempt1.json").read_text()) == list(range(8, 12))
    assert not (crashing / "attempt0.json").exists()  # the first attempt never finished
    first, second = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(crashing / "checkpoint.pt")
    assert first["step"] == second["step"] == 12
    for key in STATE_KEYS:
        assert_same_state(first[key], second[key], key)
    assert len(second["rng"]) == 2
    assert_same_state(first["rng"], second["rng"], "rng")


def test_process_killed_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    """SIGKILL halfway through writing the step-8 checkpoint: the step-4 one is intact and resuming matches."""
    output = tmp_path / "run"
    result = run_job(str(JOB), "--crashing", str(output), "--kill-at-save", "2")
    assert result.returncode == -signal.SIGKILL, result.stderr[-4000:]
    leftovers = [path for path in output.iterdir() if path.name.startswith(".checkpoint.pt.")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the write was under way
    assert load_checkpoint(output / "checkpoint.pt")["step"] == 4

    resumed = job.make_trainer(output)
    resumed.fit()
    assert resumed.method.steps_seen == list(range(4, 12))
    assert not leftovers[0].exists()  # the next good save cleared it
    # the step-4 checkpoint is kept as the previous one; metrics of steps 5-8 logged before the kill are rotated away
    expected = ["checkpoint.previous.pt", "checkpoint.pt", "metrics.jsonl", "metrics.jsonl.1"]
    assert sorted(path.name for path in output.iterdir()) == expected
    straight = job.make_trainer(tmp_path / "straight")
    straight.fit()
    for (name, a), (_, b) in zip(
        straight.method.state_dict().items(), resumed.method.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_disk_full_during_a_save_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save_until_the_disk_fills(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    trainer = job.make_trainer(tmp_path)
    with pytest.raises(OSError, match="No space left on device") as raised:
        trainer.fit()
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert str(tmp_path / "checkpoint.pt") in message and "previous checkpoint there is intact" in message
    assert trainer.method.steps_seen == list(range(8))  # stopped at the failed save, no step after it
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]  # no temp file
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4

    resumed = job.make_trainer(tmp_path)  # once space is freed the run goes on from the last good checkpoint
    resumed.fit()
    assert resumed.method.steps_seen == list(range(4, 12))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_frozen_rank_ends_the_run_within_the_collective_timeout_naming_it(tmp_path):
    """Rank 1 SIGSTOPs itself after step 2 of two gloo ranks; with collective_timeout=4 s rank 0 ends with an error
    naming rank 1, instead of waiting torch's default 30 minutes. The 180 s allowed is for two interpreters
    starting on a loaded 2-core machine (54 s seen there; a few seconds when idle)."""
    port, output = free_port(), tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    command = [sys.executable, str(JOB), "--crashing", str(output), "--freeze-rank", "1", "--freeze-step", "2",
               "--collective-timeout", "4"]  # fmt: skip
    ranks = [
        subprocess.Popen(
            command, env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)}, cwd=JOB.parent,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for rank in range(2)
    ]
    try:
        _, errors = ranks[0].communicate(timeout=180)
        assert ranks[0].returncode != 0
        assert "PeerFailureError: rank 0:" in errors and "collective_timeout=4 s" in errors, errors[-3000:]
        assert "rank 1 did not answer: frozen or lost" in errors, errors[-3000:]
        assert ranks[1].poll() is None  # still there, stopped
    finally:
        for process in ranks:
            process.kill()
            process.communicate()


def test_the_store_probe_names_the_ranks_that_never_check_in():
    """In one process: ranks 0 and 2 of 3 check in through a real TCPStore, rank 1 never does."""
    store = dist.TCPStore("127.0.0.1", 0, world_size=1, is_master=True, timeout=timedelta(seconds=5))
    answer = {}
    peer = threading.Thread(target=lambda: answer.update(peer=unanswering_ranks(store, 2, 3, wait=1.0)))
    peer.start()
    assert unanswering_ranks(store, 0, 3, wait=1.0) == [1]
    peer.join()
    assert answer["peer"] == [1]
    assert is_collective_failure(RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection reset by peer"))
    assert not is_collective_failure(RuntimeError("rank 0 could not save checkpoint /x/checkpoint.pt"))
