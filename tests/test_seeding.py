"""The one seeding module: every global random stream seeded, captured and restored, by definition."""

from __future__ import annotations

import random

import numpy as np
import torch

from contrastive_seq.seeding import capture_random_state, forked_random_state, restore_random_state, seed_everything


def draws() -> tuple:
    """One draw from each global stream (Python's cached Gaussian too)."""
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)], random.gauss(0, 1)


def test_random_state_round_trip():
    saved = capture_random_state()
    drawn = draws()
    restore_random_state(saved)
    assert draws() == drawn


def test_seed_everything_seeds_each_stream_as_its_own_seed_function_does():
    seed = 2**40 + 7
    seed_everything(seed)
    drawn = draws()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    assert draws() == drawn


def test_forked_random_state_leaves_the_callers_streams_as_they_were():
    seed_everything(1)
    expected = draws()
    seed_everything(1)
    with forked_random_state(5):
        inside = draws()
    assert draws() == expected  # the block's draws were undone
    with forked_random_state(5):
        assert draws() == inside  # a seeded block draws the same whatever the caller's streams
    seed_everything(1)
    with forked_random_state():
        assert draws() == expected  # unseeded: the caller's next draws, then undone
    assert draws() == expected


def test_a_checkpointed_state_holds_only_tensors_and_plain_values(tmp_path):
    """What :func:`capture_random_state` returns survives ``torch.load(weights_only=True)`` and restores the streams."""
    torch.save(capture_random_state(), tmp_path / "state.pt")
    drawn = draws()
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert draws() == drawn
