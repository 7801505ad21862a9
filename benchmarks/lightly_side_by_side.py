"""SimCLR, BYOL, SimSiam and Barlow Twins side by side: this library's methods against lightly's modules.

Both sides train the same backbone (one random initialisation, copied), on
the very same batches (one sampler, one views step, one seed: each batch is
built once and given to both), for the same number of steps, with the same
optimiser and learning-rate schedule, in one interleaved loop so that a busy
machine slows both alike. Only the method differs: ours (heads, loss, EMA
copy) against lightly's (``SimCLRProjectionHead`` + ``NTXentLoss``;
``BYOLProjectionHead``, ``BYOLPredictionHead``, ``NegativeCosineSimilarity``,
``update_momentum`` with ``cosine_schedule``; ``SimSiamProjectionHead``,
``SimSiamPredictionHead``, ``NegativeCosineSimilarity``;
``BarlowTwinsProjectionHead``, ``BarlowTwinsLoss``). Both sides take one
AdamW over every parameter (SimSiam's fixed predictor rate is off here, as
lightly's example has none). Printed: kNN and linear-probe
accuracy of the backbone on Fashion-MNIST's test split, median time per
training step (forward, backward, optimiser step, momentum update; building
the batch is shared and not timed) and the ratios ours / lightly.

Needs ``pip install --no-deps lightly==1.6.0`` (the modules used here import nothing
beyond torch) and Debian's ``dataset-fashion-mnist``::

    python benchmarks/lightly_side_by_side.py --steps 300 --batch-size 128 --train-subset 10000
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from contrastive_seq.data import ArrayDataset
from contrastive_seq.data.fashion_mnist import load_fashion_mnist
from contrastive_seq.evaluation.embeddings import embed_in_batches
from contrastive_seq.evaluation.probes import knn_accuracy, linear_probe_accuracy
from contrastive_seq.losses import BarlowTwinsLoss as OurBarlowTwinsLoss
from contrastive_seq.losses import BYOLLoss, NTXent
from contrastive_seq.methods.byol import BYOL
from contrastive_seq.methods.redundancy import BarlowTwins
from contrastive_seq.methods.simclr import SimCLR
from contrastive_seq.methods.simsiam import SimSiam
from contrastive_seq.models import MLPHead, SmallConvNet
from contrastive_seq.sampling import AugmentationSampler
from contrastive_seq.training import SampledBatches
from contrastive_seq.training.schedule import lr_lambda
from contrastive_seq.views import TransformedViews, Views
from contrastive_seq.views.image import byol_augmentations, simclr_augmentation
from contrastive_seq.views.multicrop import MultiCropViews

METHODS = ("simclr", "byol", "simsiam", "barlow_twins")
Step = Callable[[dict[str, torch.Tensor], int], torch.Tensor]
#: the small CNN of configs/*_fashion_mnist.yaml
WIDTHS = (16, 32, 64, 128)


class LightlySimCLR(nn.Module):
    """SimCLR from lightly's modules: backbone, ``SimCLRProjectionHead``, ``NTXentLoss``."""

    def __init__(self, backbone: nn.Module, hidden: int, out: int, temperature: float):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.output_dim, hidden, out)
        self.criterion = NTXentLoss(temperature=temperature)

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        first, second = batch["views"][0], batch["views"][1]
        return self.criterion(self.head(self.backbone(first)), self.head(self.backbone(second)))

    def after_step(self, step: int) -> None:
        pass


class LightlyBYOL(nn.Module):
    """BYOL from lightly's modules, as in lightly's BYOL example."""

    def __init__(self, backbone: nn.Module, hidden: int, out: int, base_momentum: float, steps: int):
        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(backbone.output_dim, hidden, out)
        self.prediction_head = BYOLPredictionHead(out, hidden, out)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
        self.base_momentum, self.steps = base_momentum, steps

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.projection_head_momentum(self.backbone_momentum(x))

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        first, second = batch["views"][0], batch["views"][1]
        forward = self.criterion(self._online(first), self._target(second))
        backward = self.criterion(self._online(second), self._target(first))
        return 0.5 * (forward + backward)

    def after_step(self, step: int) -> None:
        momentum = cosine_schedule(step, self.steps, self.base_momentum, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)


class LightlySimSiam(nn.Module):
    """SimSiam from lightly's modules, as in lightly's SimSiam example."""

    def __init__(self, backbone: nn.Module, hidden: int, out: int, predictor_hidden: int):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(backbone.output_dim, hidden, out)
        self.prediction_head = SimSiamPredictionHead(out, predictor_hidden, out)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        z0, z1 = (self.projection_head(self.backbone(view)) for view in batch["views"][:2])
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))

    def after_step(self, step: int) -> None:
        pass


class LightlyBarlowTwins(nn.Module):
    """Barlow Twins from lightly's modules: backbone, ``BarlowTwinsProjectionHead``, ``BarlowTwinsLoss``."""

    def __init__(self, backbone: nn.Module, hidden: int, out: int, lambda_param: float):
        super().__init__()
        self.backbone = backbone
        self.head = BarlowTwinsProjectionHead(backbone.output_dim, hidden, out)
        self.criterion = BarlowTwinsLoss(lambda_param)

    def loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        first, second = batch["views"][0], batch["views"][1]
        return self.criterion(self.head(self.backbone(first)), self.head(self.backbone(second)))

    def after_step(self, step: int) -> None:
        pass


def make_step(model: nn.Module, loss: Callable, after_step: Callable, args: argparse.Namespace) -> Step:
    """One optimiser step of ``model`` on a batch, the same optimiser and schedule as the Trainer's."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.steps, args.steps // 10))

    def step(batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss(batch, index)
        value.backward()
        optimizer.step()
        scheduler.step()
        after_step(index)
        return value.detach()

    return step


def compare(
    name: str,
    ours: nn.Module,
    ours_backbone: nn.Module,
    theirs: nn.Module,
    views: Views,
    data: tuple[ArrayDataset, ArrayDataset],
    args: argparse.Namespace,
) -> dict[str, tuple[float, float]]:
    """Train both in one interleaved loop on shared batches; return ``{metric: (ours, lightly)}``."""
    train, test = data
    batches = SampledBatches(train, AugmentationSampler(len(train)), views, args.batch_size, args.steps, seed=args.seed)
    steps = {
        "ours": make_step(ours, lambda batch, index: ours.training_step(batch).loss, ours.after_step, args),
        "lightly": make_step(theirs, theirs.loss, theirs.after_step, args),
    }
    times: dict[str, list[float]] = {"ours": [], "lightly": []}
    ours.train()
    theirs.train()
    for index in range(args.steps):
        batch = batches[index]
        losses = {}
        for side, step in steps.items():
            start = time.perf_counter()
            losses[side] = float(step(batch, index))
            times[side].append(time.perf_counter() - start)
        if index % max(1, args.steps // 5) == 0 or index == args.steps - 1:
            print(f"  {name} step {index}: loss ours {losses['ours']:.4f}, lightly {losses['lightly']:.4f}", flush=True)
    results: dict[str, tuple[float, float]] = {}
    embeddings = [
        (embed_in_batches(backbone, train.inputs), embed_in_batches(backbone, test.inputs))
        for backbone in (ours_backbone, theirs.backbone)
    ]
    for metric, score in (("knn10", knn_accuracy), ("linear_probe", linear_probe_accuracy)):
        results[metric] = tuple(score(tr, train.labels, te, test.labels) for tr, te in embeddings)
    skip = min(5, args.steps - 1)  # the first steps allocate memory
    results["ms_per_step"] = tuple(1000 * statistics.median(times[side][skip:]) for side in ("ours", "lightly"))
    return results


def subset(data: ArrayDataset, size: int | None, seed: int) -> ArrayDataset:
    """A seeded random subset of ``size`` samples (all of them when ``None``)."""
    if size is None or size >= len(data):
        return data
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return ArrayDataset(data.inputs[rows], data.labels[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-subset", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("--methods", nargs="+", default=["simclr", "byol"], choices=METHODS)
    args = parser.parse_args()
    data = (subset(load_fashion_mnist("train"), args.train_subset, args.seed), load_fashion_mnist("test"))
    rows = {}
    for name in args.methods:  # the settings of configs/<method>_fashion_mnist.yaml
        torch.manual_seed(args.seed)
        backbone = SmallConvNet(1, WIDTHS)
        ours_backbone, their_backbone = copy.deepcopy(backbone), copy.deepcopy(backbone)
        torch.manual_seed(args.seed + 1)
        if name == "simclr":
            views = TransformedViews(simclr_augmentation(28, 1, (0.4, 1.0), jitter_strength=0.5, blur_probability=0.0))
            ours = SimCLR(ours_backbone, MLPHead(128, 256, 64), NTXent(temperature=0.2))
            theirs = LightlySimCLR(their_backbone, 256, 64, temperature=0.2)
        else:
            views = MultiCropViews(byol_augmentations(28, 1, (0.4, 1.0), blur_probabilities=(0.2, 0.0)))
        if name == "byol":
            heads = MLPHead(128, 512, 128), MLPHead(128, 512, 128)
            ours = BYOL(ours_backbone, *heads, BYOLLoss(), base_momentum=0.99, momentum_steps=args.steps)
            theirs = LightlyBYOL(their_backbone, 512, 128, 0.99, args.steps)
        elif name == "simsiam":
            projector = MLPHead(128, 512, 512, num_layers=3, output_batch_norm=True)
            ours = SimSiam(ours_backbone, projector, MLPHead(512, 128, 512), fixed_predictor_lr=False)
            theirs = LightlySimSiam(their_backbone, 512, 512, 128)
        elif name == "barlow_twins":
            ours = BarlowTwins(ours_backbone, MLPHead(128, 1024, 1024, num_layers=3), OurBarlowTwinsLoss(5e-3))
            theirs = LightlyBarlowTwins(their_backbone, 1024, 1024, 5e-3)
        rows[name] = compare(name, ours, ours_backbone, theirs, views, data, args)
    print(f"\nFashion-MNIST, SmallConvNet{WIDTHS}, batch {args.batch_size}, {args.steps} steps, seed {args.seed}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'method':8} {'metric':13} {'ours':>9} {'lightly':>9} {'ours/lightly':>13}")
    for name, results in rows.items():
        for metric, (ours_value, their_value) in results.items():
            print(f"{name:8} {metric:13} {ours_value:9.4f} {their_value:9.4f} {ours_value / their_value:13.3f}")


if __name__ == "__main__":
    main()
