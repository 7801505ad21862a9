"""Image-text evaluation: zero-shot classification with prompt templates and retrieval recall@k.

Zero-shot (Radford et al. 2021): each class is embedded as the mean of the
L2-normalised text embeddings of its name in every prompt template
("a photo of a {}."), renormalised; an image is assigned the class of highest
cosine similarity. Retrieval: image -> text ranks all captions for each
image, text -> image all images for each caption; recall@k is the fraction of
queries with a relevant item among the k most similar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from sklearn.metrics import recall_score

from contrastive_seq.evaluation.distributed_embed import Indexable
from contrastive_seq.evaluation.distributed_embed import across_ranks as split_across_ranks
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.data.caption_tokens import CaptionTokens


def _check_matrix(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (rows, dim), got {getattr(x, 'shape', type(x).__name__)}")
    return x


def class_embeddings(
    embed_texts: Callable[[list[str]], torch.Tensor], class_names: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """One unit vector per class ``(classes, dim)``: the renormalised mean of its templated prompts' unit embeddings.

    Args:
        embed_texts: ``texts -> (len(texts), dim)`` text embeddings.
        class_names: the names put into the templates.
        templates: prompt strings with one ``{}`` each, e.g. ``"a photo of a {}."``.
    """
    if not templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with one '{{}}' each, got {templates!r}")
    if not class_names:
        raise ValueError("class_names must not be empty")
    prompts = [template.format(name) for name in class_names for template in templates]
    embedded = F.normalize(embed_texts(prompts).float(), dim=-1).view(len(class_names), len(templates), -1)
    return F.normalize(embedded.mean(1), dim=-1)


def zero_shot_scores(image_embeddings: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> dict[str, float]:
    """Accuracy and balanced accuracy of assigning each image ``(n, dim)`` the most cosine-similar class row of ``classes (C, dim)``.

    Balanced accuracy is the mean over the classes present in ``labels (n,)``
    of the fraction of that class's images assigned to it (mean per-class
    recall, as CLIP reports for unbalanced test sets): guessing, or always
    answering the majority class, scores one over the number of classes.

    Returns:
        ``{"zero_shot_accuracy": ..., "zero_shot_balanced_accuracy": ...}``.
    """
    image_embeddings, classes = _check_matrix("image_embeddings", image_embeddings), _check_matrix("classes", classes)
    labels = torch.as_tensor(labels)
    if labels.shape != (image_embeddings.shape[0],):
        raise ValueError(f"labels must have shape ({image_embeddings.shape[0]},), got {tuple(labels.shape)}")
    predicted = (F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T).argmax(1).cpu()
    labels = labels.cpu()
    present = labels.unique().numpy()  # classes no test image has are left out of the mean, not counted as 0
    return {
        "zero_shot_accuracy": float((predicted == labels).float().mean()),
        "zero_shot_balanced_accuracy": float(recall_score(labels.numpy(), predicted.numpy(), labels=present, average="macro")),
    }


def retrieval_recall(
    image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k of image -> text and text -> image retrieval by cosine similarity.

    Args:
        image_embeddings: ``(n, dim)``.
        text_embeddings: ``(m, dim)``.
        relevant: ``(n, m)`` bool, whether caption j is a correct answer for
            image i (see :func:`caption_relevance`).
        ks: cut-offs (capped at the number of candidates).

    Returns:
        ``{"image_to_text_recall@k": ..., "text_to_image_recall@k": ...}`` for every k.
    """
    image_embeddings = _check_matrix("image_embeddings", image_embeddings)
    text_embeddings = _check_matrix("text_embeddings", text_embeddings)
    n, m = image_embeddings.shape[0], text_embeddings.shape[0]
    if relevant.shape != (n, m) or relevant.dtype != torch.bool:
        raise ValueError(f"relevant must be a bool tensor of shape ({n}, {m}), got {relevant.dtype} {tuple(relevant.shape)}")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {ks!r}")
    similarity = F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(text_embeddings.float(), dim=-1).T
    scores = {}
    for direction, sim, rel in (("image_to_text", similarity, relevant), ("text_to_image", similarity.T, relevant.T)):
        for k in ks:
            top = sim.topk(min(k, sim.shape[1]), dim=1).indices
            scores[f"{direction}_recall@{k}"] = float(rel.gather(1, top).any(1).float().mean())
    return scores


def caption_relevance(caption_image: torch.Tensor, num_images: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``(num_images, m)`` bool: caption j is relevant to image i when it describes it.

    With ``labels (num_images,)``, relevance is by class instead: caption j is
    relevant to every image of the class of its own image (for captions made
    from class templates, where one text describes many images).
    """
    caption_image = torch.as_tensor(caption_image).long()
    if labels is None:
        return torch.arange(num_images).unsqueeze(1) == caption_image.unsqueeze(0)
    labels = torch.as_tensor(labels).long()
    return labels.unsqueeze(1) == labels[caption_image].unsqueeze(0)


@torch.no_grad()
def embed_texts_in_batches(
    method: torch.nn.Module, tokens: CaptionTokens | torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Text embeddings ``(m, dim)`` float32 on the CPU of token ids ``(m, context_length)``, via ``method.embed_text``."""
    device = next(method.parameters()).device
    was_training = method.training
    method.eval()
    try:
        chunks = [method.embed_text(tokens[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(tokens), batch_size)]
    finally:
        method.train(was_training)
    return torch.cat(chunks)


def evaluate_image_text(
    method: torch.nn.Module,
    images: torch.Tensor | Indexable,
    caption_tokens: CaptionTokens | torch.Tensor,
    relevant: torch.Tensor,
    labels: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = ("a photo of a {}.",),
    ks: Sequence[int] = (1, 5, 10),
    across_ranks: bool = False,
) -> dict[str, float]:
    """Retrieval recall@k and, given labels and class names, zero-shot accuracy of a CLIP-style method.

    Args:
        method: has ``embed(images) -> (n, d)``, ``embed_text(tokens) -> (m, d)``
            and ``tokenize(texts) -> tokens`` (a :class:`~contrastive_seq.methods.clip.CLIP`).
        images: ``(n, C, H, W)`` float in [0, 1]; with ``across_ranks``, also a dataset
            indexed by index tensors (each rank then decodes only its share).
        caption_tokens: the captions' token ids, ``caption_tokens[rows]`` ``(k, context_length)`` (a
            packed :class:`~contrastive_seq.data.caption_tokens.CaptionTokens` or a padded tensor).
        relevant: ``(n, m)`` bool (see :func:`caption_relevance`).
        labels, class_names, templates: for zero-shot classification.
        ks: recall cut-offs.
        across_ranks: in a process group, each rank embeds its share of the
            images, captions and prompts and every rank gets all embeddings
            (:mod:`~contrastive_seq.evaluation.distributed_embed`); every rank
            must then call this function. The scores equal one process's.

    Returns:
        ``{"zero_shot_accuracy": ..., "zero_shot_balanced_accuracy": ..., "image_to_text_recall@k": ...,
        "text_to_image_recall@k": ...}`` (zero-shot scores only with labels and class names).
    """
    def embed(embed_rows: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return split_across_ranks(embed_rows, inputs) if across_ranks else embed_rows(inputs)

    image_embeddings = embed(lambda rows: embed_in_batches(method, rows), images)
    text_embeddings = embed(lambda rows: embed_texts_in_batches(method, rows), caption_tokens)
    scores = retrieval_recall(image_embeddings, text_embeddings, relevant, ks)
    if labels is not None and class_names is not None:

        def embed_prompts(texts: list[str]) -> torch.Tensor:
            return embed(lambda rows: embed_texts_in_batches(method, rows), method.tokenize(texts))

        classes = class_embeddings(embed_prompts, class_names, templates)
        scores = {**zero_shot_scores(image_embeddings, labels, classes), **scores}
    return scores
