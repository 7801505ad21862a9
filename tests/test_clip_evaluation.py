"""Zero-shot classification and retrieval recall against hand-made embeddings with known answers."""

import pytest
import torch

from contrastive_seq.evaluation.zero_shot import (
    caption_relevance,
    class_embeddings,
    retrieval_recall,
    zero_shot_scores,
)


def test_class_embedding_is_the_renormalised_mean_of_unit_prompt_embeddings():
    table = {"a x": [2.0, 0.0], "the x": [0.0, 5.0], "a y": [-1.0, 0.0], "the y": [0.0, -3.0]}
    classes = class_embeddings(lambda texts: torch.tensor([table[t] for t in texts]), ["x", "y"], ["a {}", "the {}"])
    root_half = 2**-0.5
    assert torch.allclose(classes, torch.tensor([[root_half, root_half], [-root_half, -root_half]]))
    images = torch.tensor([[1.0, 0.1], [0.1, -1.0], [3.0, 2.0], [-0.2, 0.1]])
    # cosine with (1, 1) / sqrt 2 decides: positive sum -> x (0), negative -> y (1)
    assert zero_shot_scores(images, torch.tensor([0, 1, 0, 1]), classes)["zero_shot_accuracy"] == 1.0
    assert zero_shot_scores(images, torch.tensor([0, 0, 0, 0]), classes)["zero_shot_accuracy"] == 0.5


def per_class_recall_mean(labels: list[int], predicted: list[int]) -> float:
    """Balanced accuracy from its definition: for each class in labels, the share of its images predicted as it; their mean."""
    recalls = []
    for c in sorted(set(labels)):
        mine = [p for y, p in zip(labels, predicted) if y == c]
        recalls.append(sum(p == c for p in mine) / len(mine))
    return sum(recalls) / len(recalls)


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_in_the_labels():
    generator = torch.Generator().manual_seed(0)
    classes = torch.randn(5, 8, generator=generator)
    images = torch.randn(60, 8, generator=generator)
    labels = torch.cat([torch.zeros(40, dtype=torch.long), torch.randint(1, 4, (20,), generator=generator)])  # no class 4
    predicted = (torch.nn.functional.normalize(images, dim=-1) @ torch.nn.functional.normalize(classes, dim=-1).T).argmax(1)
    assert (predicted == 4).any()  # a class with no image is predicted: it must not enter the mean
    scores = zero_shot_scores(images, labels, classes)
    assert scores["zero_shot_balanced_accuracy"] == pytest.approx(per_class_recall_mean(labels.tolist(), predicted.tolist()))
    assert scores["zero_shot_accuracy"] == pytest.approx(float((predicted == labels).float().mean()))
    # always answering the majority class: accuracy is its share, balanced accuracy one over the classes present
    majority = torch.zeros(60, 5)
    majority[:, 0] = 1.0
    scores = zero_shot_scores(majority, labels, torch.eye(5))
    assert scores["zero_shot_accuracy"] == pytest.approx(40 / 60)
    assert scores["zero_shot_balanced_accuracy"] == pytest.approx(1 / labels.unique().numel())


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
        zero_shot_scores(torch.randn(3, 2), torch.tensor([0, 1]), torch.randn(2, 2))


def test_chance_row_is_the_majority_rate_one_class_in_c_and_the_hypergeometric_recall():
    from math import comb

    from contrastive_seq.experiments.clip import chance_scores

    caption_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6])  # 7 images, 11 captions, 1-3 captions each
    labels = torch.tensor([2, 2, 2, 0, 5, 0, 2])  # classes 0, 2, 5 present; majority class 2 has 4 of 7
    relevant = caption_relevance(caption_image, 7)
    scores = chance_scores(relevant, labels)
    assert scores["zero_shot_accuracy"] == pytest.approx(4 / 7)
    assert scores["zero_shot_balanced_accuracy"] == pytest.approx(1 / 3)
    for direction, rel in (("image_to_text", relevant), ("text_to_image", relevant.T)):
        candidates = rel.shape[1]
        for k in (1, 5, 10):
            # k distinct candidates drawn at random miss all h relevant ones with probability C(m - h, k) / C(m, k)
            draws = min(k, candidates)
            expected = sum(1 - comb(candidates - int(h), draws) / comb(candidates, draws) for h in rel.sum(1)) / len(rel)
            assert scores[f"{direction}_recall@{k}"] == pytest.approx(expected)
