"""ContrastiveEmbedding against CEBRA 0.6.1 on the same synthetic place cells, on the CPU.

Both sides get the same data (:func:`contrastive_seq.data.synthetic.synthetic_place_cells`,
40 neurons by default (``--neurons``), behaviour = position and run direction as continuous labels),
the same architecture size (10-sample receptive field, 32 hidden channels,
3-D output on the sphere: ``offset10`` / ``offset10-model``), the same
pairing (CEBRA-Behaviour, ``time_delta`` conditional, ``time_offsets=10``,
512 negatives), batch 512, τ = 1, learning rate 3e-4, the same number of
steps and the same torch thread count, through each library's estimator
(``fit`` on arrays).

After a few warm-up steps of both (one-time costs such as lazy imports),
seconds per step come from two fits of different lengths,
``(time(n2 steps) - time(n1 steps)) / (n2 - n1)``, so set-up (building the
nearest-neighbour index, moving data) cancels and what remains is the
whole training loop per step: sampling, batching, forward, backward, update.
Both are reported as CPU seconds of the process (``time.process_time``:
every thread of the process counts, other processes do not, so the figure
holds on a shared machine) and as wall-clock seconds; iterations per second
and the ratio use CPU seconds. Our and CEBRA's fits alternate, so a busy
machine slows both alike.

At T = 10^4 both train on the first 80 % of the time and decode position on
the last 20 % with the same kNN regressor (k = 10, cosine) on their
embeddings; the median absolute error is in metres (1.6 m track). At
T = 10^6 CEBRA can be timed over a few steps only (``--large-cebra-steps``):
each of its positives searches all T labels.

A third row, ``drop-in``, is ``contrastive_seq.CEBRA`` built with CEBRA's
exact constructor arguments (:func:`cebra_arguments`), as a CEBRA script
would after changing one line; its ratio is against CEBRA as well.

Needs ``pip install cebra`` (0.6.1; it leaves the installed torch alone)::

    python benchmarks/cebra_side_by_side.py                      # the README table (about 10 min on 1 thread)
    python benchmarks/cebra_side_by_side.py --lengths 10000 --steps 300
"""

from __future__ import annotations

import argparse
import time

import cebra
import numpy as np
import torch

import contrastive_seq
from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.evaluation.decoding import knn_regression_scores
from contrastive_seq.experiments.timeseries import split_in_time

BATCH, HIDDEN, OUTPUT, OFFSET, LR, TEMPERATURE = 512, 32, 3, 10, 3e-4, 1.0
TRACK_M, KNN_K, TEST_FRACTION = 1.6, 10, 0.2


def ours(steps: int, seed: int) -> ContrastiveEmbedding:
    """The estimator of this library, set up like CEBRA below."""
    return ContrastiveEmbedding(
        model_architecture="offset10",
        num_hidden_units=HIDDEN,
        output_dimension=OUTPUT,
        conditional="time_delta",
        time_offsets=OFFSET,
        distance="cosine",
        temperature=TEMPERATURE,
        batch_size=BATCH,
        learning_rate=LR,
        max_iterations=steps,
        device="cpu",
        random_state=seed,
    )


def cebra_arguments(steps: int) -> dict:
    """CEBRA's constructor arguments, shared by CEBRA and the drop-in row."""
    return dict(
        model_architecture="offset10-model",
        num_hidden_units=HIDDEN,
        output_dimension=OUTPUT,
        conditional="time_delta",
        time_offsets=OFFSET,
        distance="cosine",
        temperature=TEMPERATURE,
        batch_size=BATCH,
        learning_rate=LR,
        max_iterations=steps,
        device="cpu",
        verbose=False,
    )


def theirs(steps: int, seed: int) -> cebra.CEBRA:
    """CEBRA's estimator (its random state is torch's global one, seeded here)."""
    torch.manual_seed(seed)
    return cebra.CEBRA(**cebra_arguments(steps))


# --- the drop-in row: contrastive_seq.CEBRA with CEBRA's exact constructor arguments ---
def drop_in(steps: int, seed: int) -> contrastive_seq.CEBRA:
    """``contrastive_seq.CEBRA(...)`` where a CEBRA script has ``cebra.CEBRA(...)`` (NumPy's global state seeded)."""
    np.random.seed(seed)
    return contrastive_seq.CEBRA(**cebra_arguments(steps))


def timed_fit(model: object, neural: np.ndarray, behaviour: np.ndarray) -> np.ndarray:
    """``[CPU seconds, wall-clock seconds]`` of ``model.fit(neural, behaviour)``."""
    start = np.array([time.process_time(), time.perf_counter()])
    model.fit(neural, behaviour)
    return np.array([time.process_time(), time.perf_counter()]) - start


def position_scores(model: object, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Held-out kNN decoding of position from ``model.transform``: ``{"median_error_m", "r2"}``."""
    scores = knn_regression_scores(
        model.transform(train[0]), train[1][:, 0], model.transform(test[0]), test[1][:, 0], k=KNN_K, metric="cosine"
    )
    return {"median_error_m": scores["median_absolute_error"] * TRACK_M, "r2": scores["r2"]}


def compare(
    length: int, neurons: int, short: dict[str, int], long: dict[str, int], decode: bool, seed: int
) -> dict[str, dict]:
    """Seconds per step of both sides at T = ``length`` (and decoding after the long fits when ``decode``)."""
    recording = synthetic_place_cells(num_neurons=neurons, num_timepoints=length, seed=seed)
    if decode:
        train_part, test_part = split_in_time(recording, TEST_FRACTION)
    else:
        train_part = test_part = recording
    train = (train_part.neural.numpy(), train_part.continuous.numpy())
    test = (test_part.neural.numpy(), test_part.continuous.numpy())
    builders = {"ours": ours, "cebra": theirs, "drop-in": drop_in}
    rows = {}
    for side, build in builders.items():
        rows[side] = {"short": timed_fit(build(short[side], seed), *train)}
    for side, build in builders.items():
        model = build(long[side], seed)
        rows[side]["long"] = timed_fit(model, *train)
        cpu, wall = (rows[side]["long"] - rows[side]["short"]) / (long[side] - short[side])
        rows[side].update(s_per_step=cpu, wall_s_per_step=wall)
        rows[side]["steps"] = (short[side], long[side])
        if decode:
            rows[side].update(position_scores(model, train, test))
    return rows


def warm_up(neurons: int, seed: int) -> None:
    """A few steps of both sides on small data, so that one-time costs (lazy imports) fall outside the timed fits."""
    recording = synthetic_place_cells(num_neurons=neurons, num_timepoints=2_000, seed=seed)
    for build in (ours, theirs, drop_in):
        build(3, seed).fit(recording.neural.numpy(), recording.continuous.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=1000, help="training steps of both sides at T = 10^4 (decoded)")
    parser.add_argument("--short-steps", type=int, default=50, help="steps of the short fit that cancels set-up")
    parser.add_argument("--large-steps", type=int, default=550, help="our steps at T > 10^4")
    parser.add_argument("--large-cebra-steps", type=int, nargs=2, default=[2, 6], metavar=("N1", "N2"),
                        help="CEBRA's short and long fits at T > 10^4")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--neurons", type=int, default=40, help="neurons of the synthetic recording")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cebra {cebra.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"batch {BATCH}, offset10 / {HIDDEN} hidden / {OUTPUT}-D, {args.neurons} neurons")
    header = (f"{'T':>9}  {'side':<6} {'steps (n1, n2)':<15} {'CPU s/step':>10} {'wall s/step':>11} {'it/s':>7}"
              f" {'ours/cebra it/s':>16}"
              f" {'median pos. error (m)':>22} {'pos. R2':>8}")
    print(header)
    warm_up(args.neurons, args.seed)
    ours_seconds = {}
    for length in args.lengths:
        decode = length == min(args.lengths)
        small = length <= 10_000
        long = {"ours": args.steps if small else args.large_steps,
                "cebra": args.steps if small else args.large_cebra_steps[1]}
        short = {"ours": args.short_steps,
                 "cebra": args.short_steps if small else args.large_cebra_steps[0]}
        long["drop-in"], short["drop-in"] = long["ours"], short["ours"]
        rows = compare(length, args.neurons, short, long, decode, args.seed)
        ours_seconds[length] = rows["ours"]["s_per_step"]
        for side, row in rows.items():
            error = f"{row['median_error_m']:.4f}" if decode else "-"
            r2 = f"{row['r2']:.4f}" if decode else "-"
            shown_ratio = "" if side == "cebra" else f"{rows['cebra']['s_per_step'] / row['s_per_step']:.2f}"
            print(f"{length:>9}  {side:<6} {row['steps']!s:<15} {row['s_per_step']:>10.4f} "
                  f"{row['wall_s_per_step']:>11.4f} "
                  f"{1 / row['s_per_step']:>7.2f} {shown_ratio:>16} {error:>22} {r2:>8}", flush=True)
    smallest = min(ours_seconds)
    for length, seconds in ours_seconds.items():
        if length != smallest:
            print(f"ours: CPU s/step at T={length} / at T={smallest} = {seconds / ours_seconds[smallest]:.2f}")


if __name__ == "__main__":
    main()
