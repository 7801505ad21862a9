"""Transfer to a new session with another neuron count: adapting a fitted model against fitting anew.

A model is fitted on session A (synthetic place cells,
:func:`contrastive_seq.data.synthetic.synthetic_place_cells`, ``--source-neurons``
neurons, behaviour = position and run direction). Session B is another
animal on the same track: other neurons (``--target-neurons``), other laps.
On the first 80 % of B, for S steps each:

- ``adapt``: ``fit(B, y_B, adapt=True)`` on a copy of the fitted model: a new
  input layer is trained into A's embedding space, every other layer frozen,
  at ``--adapt-learning-rate`` (default: the estimator's, 10 × the learning rate);
- ``scratch``: a fresh model of the same settings fitted on B alone.

Both embed B's last 20 % and decode position with a kNN regressor (k = 10,
cosine) trained on their embedding of B's first 80 %; the table gives the
median absolute error in cm (1.6 m track) per S, over ``--seeds`` (A, B and
both fits change with the seed). Settings are those of
``benchmarks/cebra_side_by_side.py`` (offset10, 32 hidden, 3-D, batch 512,
τ = 1) and the learning rate ``--learning-rate`` (the fit on A and from scratch).

Sessions in one multi-session fit each have their own encoder (no shared
layers), so the source is a single-session model, as in CEBRA's ``adapt=True``::

    python benchmarks/adapt_new_session.py
    python benchmarks/adapt_new_session.py --steps 25 100 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.recording import Recording
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.evaluation.decoding import knn_regression_scores
from contrastive_seq.experiments.timeseries import split_in_time

TRACK_CM, KNN_K, TEST_FRACTION = 160.0, 10, 0.2


def estimator(steps: int, seed: int, learning_rate: float) -> ContrastiveEmbedding:
    """The settings of both sides (and of the source fit): ``steps`` training steps, adapting included."""
    return ContrastiveEmbedding(
        model_architecture="offset10",
        num_hidden_units=32,
        output_dimension=3,
        conditional="time_delta",
        time_offsets=10,
        distance="cosine",
        temperature=1.0,
        batch_size=512,
        learning_rate=learning_rate,
        max_iterations=steps,
        max_adapt_iterations=steps,
        device="cpu",
        random_state=seed,
    )


def median_error_cm(model: ContrastiveEmbedding, train: Recording, test: Recording) -> float:
    """Held-out kNN decoding of position from ``model.transform``: median absolute error in cm."""
    scores = knn_regression_scores(
        model.transform(train.neural.numpy()), train.continuous[:, 0].numpy(),
        model.transform(test.neural.numpy()), test.continuous[:, 0].numpy(), k=KNN_K,
    )
    return scores["median_absolute_error"] * TRACK_CM


def one_seed(args: argparse.Namespace, seed: int) -> dict[tuple[str, int], float]:
    """``{(side, S): median error in cm}`` for one seed."""
    source = synthetic_place_cells(args.source_neurons, args.timepoints, seed=seed, name="A")
    target = synthetic_place_cells(args.target_neurons, args.timepoints, seed=1000 + seed, name="B")
    train, test = split_in_time(target, TEST_FRACTION)
    fitted = estimator(args.source_steps, seed, args.learning_rate)
    fitted.fit(source.neural.numpy(), source.continuous.numpy())
    errors = {}
    for steps in args.steps:
        adapted = copy.deepcopy(fitted)
        adapted.set_params(max_adapt_iterations=steps, adapt_learning_rate=args.adapt_learning_rate)
        adapted.fit(train.neural.numpy(), train.continuous.numpy(), adapt=True)
        scratch = estimator(steps, seed, args.learning_rate).fit(train.neural.numpy(), train.continuous.numpy())
        errors["adapt", steps] = median_error_cm(adapted, train, test)
        errors["scratch", steps] = median_error_cm(scratch, train, test)
        print(f"seed {seed}  S={steps:<5} adapt {errors['adapt', steps]:6.2f} cm   "
              f"scratch {errors['scratch', steps]:6.2f} cm", flush=True)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-neurons", type=int, default=40)
    parser.add_argument("--target-neurons", type=int, default=70)
    parser.add_argument("--timepoints", type=int, default=5_000, help="time bins of each session")
    parser.add_argument("--source-steps", type=int, default=1000, help="steps of the fit on session A")
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 100, 400], help="S, steps on session B")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="of the fit on A and of the scratch fit")
    parser.add_argument("--adapt-learning-rate", type=float, default=None,
                        help="of the new input layer (default: the estimator's, 10 x --learning-rate)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"A: {args.source_neurons} neurons, {args.source_steps} steps; B: {args.target_neurons} neurons; "
          f"{args.timepoints} bins each, learning rate {args.learning_rate}, "
          f"adapting {args.adapt_learning_rate or 'the default'}")
    runs = [one_seed(args, seed) for seed in args.seeds]
    print(f"\n{'S':>6}  {'adapt: median error (cm)':>26}  {'scratch':>9}   adapt better in")
    for steps in args.steps:
        adapt = np.array([run["adapt", steps] for run in runs])
        scratch = np.array([run["scratch", steps] for run in runs])
        print(f"{steps:>6}  {np.median(adapt):>26.2f}  {np.median(scratch):>9.2f}   "
              f"{int((adapt < scratch).sum())} of {len(runs)} seeds")


if __name__ == "__main__":
    main()
