"""Evaluation across ranks: two gloo ranks, each embedding its share, give one process's embeddings and scores.

One spawn of two processes runs both cases: kNN and linear probe of a linear
encoder (odd numbers of rows, so the ranks' shares differ by one; the
training set as a dataset indexed by index tensors, the test set as a tensor),
and zero-shot and retrieval of a small CLIP (images, captions and prompts
each shared among the ranks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shared_checks import free_port, join_ranks, leaving_process_group
from torch import nn

from contrastive_seq.data.arrays import ArrayDataset
from contrastive_seq.data.image_text import caption_classes
from contrastive_seq.evaluation.distributed_embed import embed_across_ranks, probe_scores_across_ranks
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.probes import knn_accuracy, linear_probe_accuracy
from contrastive_seq.evaluation.zero_shot import caption_relevance, evaluate_image_text
from contrastive_seq.losses.clip import CLIPLoss
from contrastive_seq.methods.clip import CLIP
from contrastive_seq.models.clip_towers import open_clip_towers

WORLD = 2
CLASSES = ["red", "green", "blue"]
TEMPLATES = ["a {} square", "a photo of {}"]


def probe_data():
    """``(encoder, train dataset (25 rows), test inputs (11, 6), test labels)``: three noisy classes."""
    torch.manual_seed(0)
    encoder = nn.Linear(6, 4)
    centres = torch.randn(3, 6) * 2
    labels = torch.arange(36) % 3
    inputs = centres[labels] + torch.randn(36, 6)
    return encoder, ArrayDataset(inputs[:25], labels[:25]), inputs[25:], labels[25:]


def clip_case():
    """``(CLIP method, dataset)``: 9 coloured 8x8 images with two captions each."""
    torch.manual_seed(0)
    image, text = open_clip_towers(None, 16, {"image_size": 8, "patch_size": 4, "width": 32, "layers": 1, "head_width": 16},
                                   {"context_length": 8, "width": 32, "heads": 2, "layers": 1})
    labels = torch.arange(9) % 3
    images = (torch.eye(3)[labels].view(9, 3, 1, 1) * 0.6 + torch.rand(9, 3, 8, 8) * 0.4).clamp(0, 1)
    return CLIP(image, text, CLIPLoss()), caption_classes(images, labels, CLASSES, TEMPLATES)


def evaluate_clip(across_ranks: bool) -> dict[str, float]:
    method, data = clip_case()
    tokens = method.tokenize(data.captions)
    relevant = caption_relevance(data.caption_image, len(data))
    return evaluate_image_text(method, data[torch.arange(len(data))], tokens, relevant, data.labels, CLASSES,
                               TEMPLATES, ks=(1, 3), across_ranks=across_ranks)


def _worker(rank: int, port: int, output: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    with leaving_process_group():
        encoder, train, test_x, test_y = probe_data()
        results = {
            "train_embeddings": embed_across_ranks(encoder, train, batch_size=4),
            "probes": probe_scores_across_ranks(encoder, train, train.labels, test_x, test_y, k=3, batch_size=4),
            "clip": evaluate_clip(across_ranks=True),
        }
        torch.save(results, output / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluation_ddp")
    # forked, not spawned: the ranks need not import torch, open_clip and sklearn again (3 s instead of 74 s, shared machine)
    context = mp.start_processes(_worker, args=(free_port(), output), nprocs=WORLD, join=False, start_method="fork")
    join_ranks(context)
    return [torch.load(output / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


def test_two_ranks_give_the_embeddings_and_probe_scores_of_one_process(rank_results):
    encoder, train, test_x, test_y = probe_data()
    train_x = embed_in_batches(encoder, train.inputs)
    test_embeddings = embed_in_batches(encoder, test_x)
    expected = {
        "knn_accuracy": knn_accuracy(train_x, train.labels, test_embeddings, test_y, k=3),
        "linear_probe_accuracy": linear_probe_accuracy(train_x, train.labels, test_embeddings, test_y),
    }
    assert 0 < expected["knn_accuracy"] < 1  # a score the shares could get wrong
    for result in rank_results:
        torch.testing.assert_close(result["train_embeddings"], train_x, rtol=0, atol=1e-6)
        assert result["probes"] == expected


def test_two_ranks_give_the_zero_shot_and_retrieval_scores_of_one_process(rank_results):
    expected = evaluate_clip(across_ranks=False)
    assert set(expected) >= {"zero_shot_accuracy", "image_to_text_recall@1", "text_to_image_recall@3"}
    for result in rank_results:
        assert result["clip"] == pytest.approx(expected, abs=1e-12)


def test_outside_a_process_group_it_is_the_one_process_version():
    encoder, train, test_x, test_y = probe_data()
    assert torch.equal(embed_across_ranks(encoder, train), embed_in_batches(encoder, train.inputs))
