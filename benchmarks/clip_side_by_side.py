"""Side by side with open_clip: the loss on the same features, and the time per training step.

    python benchmarks/clip_side_by_side.py [--batch-size 128] [--steps 10] [--repeats 2] [--device cpu]

1. Loss: ``CLIPLoss`` against ``open_clip.loss.ClipLoss`` on the same random
   features and logit scale, in float64: values, and gradients with respect
   to both feature matrices and the log logit scale.
2. Time per step: one open_clip model (a tiny ViT and text transformer,
   random weights) trained on one batch size two ways, each starting from the
   same weights: our ``Trainer`` running ``CLIP`` on towers that wrap the same
   open_clip modules (sampling, views, AdamW, schedule, metrics included),
   and a plain loop calling the open_clip model and ``ClipLoss`` with AdamW.
   The Trainer's time comes from its own metrics (the last log window of
   ``steps`` steps after ``steps`` warm-up steps); the loop is timed over
   the same numbers of steps. Runs alternate ``repeats`` times; medians are reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from contrastive_seq.data.image_text import ImageTextDataset
from contrastive_seq.losses.clip import CLIPLoss
from contrastive_seq.methods.clip import CLIP
from contrastive_seq.models.clip_towers import ImageTower, OpenCLIPTokenizer, TextTower
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views.image_text import ImageTextViews, tokenize_captions

VISION = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32}
TEXT = {"context_length": 24, "width": 64, "heads": 2, "layers": 2}
EMBED_DIM = 64
WORDS = "red green blue small large round square photo emoji face cat dog flag food car tree".split()


def compare_losses(rows: int = 256, dim: int = 64, temperature: float = 0.07, seed: int = 0) -> dict[str, float]:
    """Largest absolute differences between our CLIPLoss and open_clip's ClipLoss (value and gradients, float64)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    text = (image + torch.randn(rows, dim, generator=generator, dtype=torch.float64)).requires_grad_()
    image.requires_grad_()
    ours = CLIPLoss(temperature=temperature).double()
    our_value = ours(image, text).loss
    our_grads = torch.autograd.grad(our_value, [image, text, ours.core.temperature.log_scale])
    log_scale = ours.core.temperature.log_scale.detach().clone().requires_grad_()  # the same logit scale
    theirs = ClipLoss()(F.normalize(image, dim=-1), F.normalize(text, dim=-1), log_scale.exp())
    their_grads = torch.autograd.grad(theirs, [image, text, log_scale])
    names = ("grad_image", "grad_text", "grad_log_logit_scale")
    our_value, theirs = our_value.detach(), theirs.detach()
    result = {"ours": float(our_value), "open_clip": float(theirs), "value_abs_diff": abs(float(our_value - theirs))}
    for name, a, b in zip(names, our_grads, their_grads):
        result[f"{name}_max_abs_diff"] = float((a - b).abs().max())
    return result


def random_pairs(n: int, seed: int = 0) -> ImageTextDataset:
    """``n`` random 32x32 images, each with a random five-word caption."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    words = torch.randint(len(WORDS), (n, 5), generator=generator)
    return ImageTextDataset(images, [" ".join(WORDS[i] for i in row) for row in words.tolist()])


def time_trainer(model: torch.nn.Module, data: ImageTextDataset, batch_size: int, steps: int, device: str) -> float:
    """Seconds per step of our Trainer, from its metrics over ``steps`` steps after ``steps`` warm-up steps."""
    model = copy.deepcopy(model)
    image = ImageTower(model.visual, EMBED_DIM, EMBED_DIM, image_size=VISION["image_size"])
    text = TextTower(model.text, EMBED_DIM, EMBED_DIM, OpenCLIPTokenizer(TEXT["context_length"]))
    method = CLIP(image, text, CLIPLoss(temperature=0.07))
    views = ImageTextViews(tokenize_captions(data.captions, text.tokenizer))
    with tempfile.TemporaryDirectory() as output:
        config = TrainerConfig(
            max_steps=2 * steps, batch_size=batch_size, lr=1e-3, log_every=steps, checkpoint_every=None,
            output_dir=output, progress=False, device=device, schedule="constant",
        )
        Trainer(method, config, data, PairedSampler(data.caption_image, len(data)), views).fit()
        last = json.loads((Path(output) / "metrics.jsonl").read_text().splitlines()[-1])
    return batch_size / last["samples_per_s"]


def time_plain_loop(model: torch.nn.Module, data: ImageTextDataset, batch_size: int, steps: int, device: str) -> float:
    """Seconds per step of a plain loop with open_clip's model and ClipLoss (random batches, AdamW)."""
    model = copy.deepcopy(model).to(device).train()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=TEXT["context_length"])(data.captions)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    loss_fn = ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    start = 0.0
    for step in range(2 * steps):
        if step == steps:
            start = time.perf_counter()
        index = torch.randperm(len(data), generator=generator)[:batch_size]
        images = ((data.images[index].float() / 255).to(device) - mean) / std
        image_features, text_features, logit_scale = model(images, tokens[index].to(device))
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, torch.log(torch.tensor(100.0)))
        float(loss)  # one sync per step, as the Trainer logs its loss
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Print both comparisons as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps({"loss": compare_losses()}, indent=2))
    torch.manual_seed(0)
    model = open_clip.CustomTextCLIP(EMBED_DIM, VISION, TEXT)
    data = random_pairs(max(4 * args.batch_size, 1024))
    ours, plain = [], []
    for _ in range(args.repeats):
        plain.append(time_plain_loop(model, data, args.batch_size, args.steps, args.device))
        ours.append(time_trainer(model, data, args.batch_size, args.steps, args.device))
    timing = {
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "open_clip_plain_loop_s_per_step": statistics.median(plain),
        "our_trainer_s_per_step": statistics.median(ours),
        "all_plain": plain,
        "all_ours": ours,
    }
    print(json.dumps({"time_per_step": timing}, indent=2))


if __name__ == "__main__":
    main()
