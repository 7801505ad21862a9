"""Batch size, sampled negatives and key queues checked against the data size before anything is drawn."""

from __future__ import annotations

import re
import warnings

import pytest
from torch import nn

from contrastive_seq.losses import MoCoLoss, NTXent
from contrastive_seq.methods.moco import MoCo
from contrastive_seq.methods.nnclr import NNCLR
from contrastive_seq.models import MLPHead, SmallConvNet
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.sampling.multisession import MultiSessionTimeSampler
from contrastive_seq.sampling.time import TimeContrastiveSampler
from contrastive_seq.training.sizes import check_sizes_against_data


def test_a_batch_larger_than_the_data_drawn_without_replacement_is_refused():
    sampler, method = AugmentationSampler(1347), nn.Linear(1, 1)
    with pytest.raises(ValueError, match=re.escape("TrainerConfig.batch_size=5,000 is larger than the 1,347 training samples")):
        check_sizes_against_data(5000, 1, sampler, method)
    with pytest.raises(ValueError, match=re.escape("batch_size=700 x 2 ranks is larger than the 1,347 training") + ".*at most 673"):
        check_sizes_against_data(700, 2, sampler, method)
    check_sizes_against_data(1347, 1, sampler, method)
    check_sizes_against_data(5000, 1, AugmentationSampler(1347, replacement=True), method)  # with replacement: any size


def test_more_negatives_than_valid_time_points_are_refused_at_construction():
    with pytest.raises(ValueError, match=re.escape("num_negatives=91 is more than the 90 valid time points")):
        TimeContrastiveSampler(100, left_context=5, right_context=5, num_negatives=91)
    assert TimeContrastiveSampler(100, left_context=5, right_context=5, num_negatives=90).num_negatives == 90
    with pytest.raises(ValueError, match=re.escape("num_negatives=51 is more than the 50 valid time points of the shortest")):
        MultiSessionTimeSampler([80, 50], num_negatives=51)
    MultiSessionTimeSampler([80, 50], num_negatives=50)


@pytest.mark.parametrize("kind", ["moco", "nnclr"])
def test_a_queue_longer_than_the_data_warns_naming_its_setting(kind):
    if kind == "moco":
        method, setting = MoCo(SmallConvNet(1, (8, 16)), MLPHead(16, 32, 12), MoCoLoss(), queue_size=128), "MoCo queue_size=128"
    else:
        method = NNCLR(SmallConvNet(1, (8, 16)), MLPHead(16, 32, 12), MLPHead(12, 16, 12), NTXent(), support_size=128)
        setting = "NNCLR support_size=128"
    with pytest.warns(UserWarning, match=re.escape(f"{setting} is longer than the 100 training samples")):
        check_sizes_against_data(8, 1, AugmentationSampler(100), method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sizes_against_data(8, 1, AugmentationSampler(128), method)


def test_a_queue_that_cannot_fit_in_memory_is_refused_before_it_is_allocated(monkeypatch):
    """``queue_size=10**9`` keys of dim 128 would take 512 GB: refused naming the setting, nothing allocated."""
    from contrastive_seq.models import queue

    monkeypatch.setattr(queue, "available_memory", lambda device: 10**9)
    with pytest.raises(ValueError, match=r"queue_size=1,000,000,000 keys of dim 128 take 512 GB, more than the 1 GB"):
        queue.KeyQueue(10**9, 128)
    with pytest.raises(ValueError, match=r"support_size=.* use a support_size below 1,953,125"):
        queue.KeyQueue(10**9, 128, setting="support_size")
    assert queue.KeyQueue(1024, 128).keys.shape == (1024, 128)  # 0.5 MB fits
