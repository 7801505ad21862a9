"""Per-draw cost of every sampler kind as the data grows: it should stay flat in n.

Time-series samplers: for each length T = n the behaviour of a back-and-forth linear track
(:func:`contrastive_seq.data.synthetic.linear_track`: position and run
direction, ``continuous (T, 2)`` float32 and ``discrete (T,)``) is generated,
every sampler kind is built on it once (setup, reported separately: O(T log T)
for the KD-trees) and then drawn from repeatedly with batch 512. The table
gives draws per second (median over blocks of draws) and the setup time.
The other samplers are drawn on data of the same size n: augmentation views
of n items, same-class positives over n items in 10 classes, image-caption
pairs of n captions over n / 5 images, and CPC crops of 160 points from
sequences of 1,000 points (n / 1,000 sequences, 50 speakers, groups of 4).
Samplers use the margins of a receptive field of 10 (left 5, right 4). Torch
runs on one thread by default, as in DataLoader workers (a batch of 512
indices is too small for torch's parallel kernels to pay for waking threads).

Run: ``python benchmarks/sampler_scaling.py`` (about two minutes and
under 2 GB of memory at T = 10^7), or choose lengths with
``--lengths 10000 1000000``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch

from contrastive_seq.data.synthetic import linear_track
from contrastive_seq.sampling import (
    AugmentationSampler,
    ContinuousBehaviourSampler,
    DiscreteBehaviourSampler,
    HybridSampler,
    MixedBehaviourSampler,
    MultiSessionSampler,
    SameClassSampler,
    Sampler,
    TimeContrastiveSampler,
)
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler

LEFT, RIGHT = 5, 4
SESSIONS = 4
CAPTIONS_PER_IMAGE = 5
SEQUENCE_LENGTH, CROP_LENGTH, SPEAKERS = 1_000, 160, 50


def draws_per_second(sampler: Sampler, batch_size: int, draws: int, blocks: int, seed: int = 0) -> float:
    """Median over ``blocks`` of the draw rate of ``draws`` consecutive draws (after two warm-up draws)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        sampler.sample(batch_size, generator)
    rates = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(draws):
            sampler.sample(batch_size, generator)
        rates.append(draws / (time.perf_counter() - start))
    return statistics.median(rates)


def timed(build: Callable[[], Sampler]) -> tuple[Sampler, float]:
    """The sampler and its setup time in seconds."""
    start = time.perf_counter()
    sampler = build()
    return sampler, time.perf_counter() - start


def measure_length(length: int, batch_size: int, draws: int, blocks: int) -> dict[str, tuple[float, float]]:
    """``{sampler kind: (setup seconds, draws per second)}`` on data of ``length`` time points or items."""
    position, direction = linear_track(length, torch.Generator().manual_seed(length))
    continuous = torch.stack([position, direction.float()], dim=1)
    margins = {"left_context": LEFT, "right_context": RIGHT}
    sequence_lengths = torch.full((length // SEQUENCE_LENGTH,), SEQUENCE_LENGTH)
    speakers = torch.arange(len(sequence_lengths)) % SPEAKERS
    builders: dict[str, Callable[[], Sampler]] = {
        "time (offset 10)": lambda: TimeContrastiveSampler(length, 10, **margins),
        "continuous delta": lambda: ContinuousBehaviourSampler(continuous, "delta", delta=0.05, **margins),
        "continuous time_delta": lambda: ContinuousBehaviourSampler(continuous, "time_delta", time_delta=10, **margins),
        "discrete": lambda: DiscreteBehaviourSampler(direction, **margins),
        "mixed": lambda: MixedBehaviourSampler(direction, position, "time_delta", time_delta=10, **margins),
        f"multi-session ({SESSIONS} x T/{SESSIONS})": lambda: MultiSessionSampler(
            list(continuous.chunk(SESSIONS)), "time_delta", time_delta=10, **margins
        ),
        "augmentation views": lambda: AugmentationSampler(length),
        "same class (10 classes)": lambda: SameClassSampler(torch.arange(length) % 10),
        f"image-caption ({CAPTIONS_PER_IMAGE} per image)": lambda: PairedSampler(
            torch.arange(length) // CAPTIONS_PER_IMAGE, length // CAPTIONS_PER_IMAGE
        ),
        "CPC crops": lambda: SequenceCropSampler(sequence_lengths, CROP_LENGTH),
        "CPC crops, speaker groups": lambda: SpeakerGroupedSampler(sequence_lengths, CROP_LENGTH, speakers),
    }
    results = {}
    for name, build in builders.items():
        sampler, setup = timed(build)
        results[name] = (setup, draws_per_second(sampler, batch_size, draws, blocks))
        if name == "continuous time_delta":  # hybrid reuses this behaviour sampler
            hybrid, setup = timed(lambda behaviour=sampler: HybridSampler(behaviour, time_offset=10))
            results["hybrid (time + time_delta)"] = (setup, draws_per_second(hybrid, batch_size, draws, blocks))
            del hybrid
        del sampler
        gc.collect()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--draws", type=int, default=20, help="draws per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks per sampler (the median is reported)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1, as in DataLoader workers, where sampling runs)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = {length: measure_length(length, args.batch_size, args.draws, args.blocks) for length in args.lengths}
    names = list(next(iter(table.values())))
    width = max(map(len, names)) + 2
    header = "".join(f"{f'n = {length:.0e}':>14}" for length in args.lengths)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"\ndraws per second (median of {args.blocks} blocks of {args.draws} draws)")
    print(f"{'sampler':<{width}}{header}")
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{table[length][name][1]:>14.0f}" for length in args.lengths))
    print("\nsetup seconds (once per recording)")
    print(f"{'sampler':<{width}}{header}")
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{table[length][name][0]:>14.3f}" for length in args.lengths))


if __name__ == "__main__":
    main()
