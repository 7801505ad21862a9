"""Zero-shot classification and retrieval recall against hand-made embeddings with known answers."""

import pytest
import torch

from contrastive_seq.evaluation.zero_shot import (
    caption_relevance,
    class_embeddings,
    retrieval_recall,
    zero_shot_accuracy,
)


def test_class_embedding_is_the_renormalised_mean_of_unit_prompt_embeddings():
    table = {"a x": [2.0, 0.0], "the x": [0.0, 5.0], "a y": [-1.0, 0.0], "the y": [0.0, -3.0]}
    classes = class_embeddings(lambda texts: torch.tensor([table[t] for t in texts]), ["x", "y"], ["a {}", "the {}"])
    root_half = 2**-0.5
    assert torch.allclose(classes, torch.tensor([[root_half, root_half], [-root_half, -root_half]]))
    images = torch.tensor([[1.0, 0.1], [0.1, -1.0], [3.0, 2.0], [-0.2, 0.1]])
    # cosine with (1, 1) / sqrt 2 decides: positive sum -> x (0), negative -> y (1)
    assert zero_shot_accuracy(images, torch.tensor([0, 1, 0, 1]), classes) == 1.0
    assert zero_shot_accuracy(images, torch.tensor([0, 0, 0, 0]), classes) == 0.5


def test_retrieval_recall_matches_hand_ranked_example():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    captions = torch.tensor([[0.1, 1.0], [1.0, 0.2], [-1.0, 0.1], [1.0, -0.3]])
    relevant = caption_relevance(torch.tensor([0, 1, 2, 0]), 3)
    scores = retrieval_recall(images, captions, relevant, ks=(1, 2, 10))
    # image -> text: image 0 ranks captions 1, 3 (its own) ...; image 1 ranks 0, 1 (own); image 2 ranks 2 (own) first
    assert scores["image_to_text_recall@1"] == pytest.approx(1 / 3)
    assert scores["image_to_text_recall@2"] == 1.0
    # text -> image: caption 0 ranks image 1 then 0 (own); 1 ranks 0 then 1 (own); 2 and 3 find theirs first
    assert scores["text_to_image_recall@1"] == 0.5
    assert scores["text_to_image_recall@2"] == 1.0
    assert scores["text_to_image_recall@10"] == 1.0  # k capped at the 3 candidates


def test_class_relevance_marks_every_caption_of_the_same_class():
    relevant = caption_relevance(torch.tensor([0, 1, 2]), 3, labels=torch.tensor([5, 7, 5]))
    assert relevant.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="relevant must be a bool tensor of shape"):
        retrieval_recall(torch.randn(2, 3), torch.randn(4, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="templates"):
        class_embeddings(lambda t: torch.randn(len(t), 2), ["x"], ["no placeholder"])
    with pytest.raises(ValueError, match="labels must have shape"):
        zero_shot_accuracy(torch.randn(3, 2), torch.tensor([0, 1]), torch.randn(2, 2))
