"""Image self-supervision on Fashion-MNIST: pick a method by name, train it, report kNN accuracy.

Each method is one config under ``configs/`` (``<method>_fashion_mnist.yaml``; MoCo v2 is ``moco``, v3 ``moco_v3``):
the same small CNN and Fashion-MNIST data, the method's own views and
heads. Any config key can be overridden, as on the command line::

    python examples/image_ssl.py byol                       # the full run of the README's table
    python examples/image_ssl.py dino --steps 100 --train-subset 5000
    python examples/image_ssl.py moco_v3                    # MoCo v3: no queue, a predictor, symmetric

Needs Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contrastive_seq.experiments import load_experiment_config, run_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = (
    "simclr", "moco", "moco_v3", "byol", "dino", "supcon", "simsiam", "barlow_twins", "vicreg", "swav", "nnclr", "triplet"
)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one image SSL method on Fashion-MNIST and report kNN accuracy.")
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the config's)")
    parser.add_argument("--train-subset", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="more config overrides")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides += [f"train.max_steps={args.steps}", f"train.warmup_steps={args.steps // 10}"]
    if args.train_subset is not None:
        overrides.append(f"data.train_subset={args.train_subset}")
    config = load_experiment_config(CONFIGS / f"{args.method}_fashion_mnist.yaml", overrides)
    results = run_experiment(config)
    trained = results[f"{config.method.name} (trained)"]
    knn = f"knn{config.evaluation.knn_k}_accuracy"
    print(
        f"\n{args.method}: kNN accuracy {trained[knn]:.4f} "
        f"(raw pixels {results['raw inputs'][knn]:.4f}, random encoder {results['random encoder'][knn]:.4f})"
    )


if __name__ == "__main__":
    main()
