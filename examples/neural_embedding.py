"""CEBRA-style embedding of neural data with behaviour, from ``fit`` to decoding and a figure.

The data are the library's synthetic place cells: 40 Poisson neurons
recorded while an animal runs back and forth on a 1.6 m track, in 25 ms
bins; the behaviour is position (0 to 1 along the track) and run direction.
The estimator trains on the first 80 % of the time, the last 20 % is held
out; position and direction are decoded from the held-out embedding with k
nearest neighbours fitted on the training embedding.

Run (about half a minute on one core)::

    python examples/neural_embedding.py --output runs/neural_embedding

It prints the decoding scores and writes ``embedding.png`` and the fitted
model ``model.pt`` (reload it with ``ContrastiveEmbedding.load``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contrastive_seq import ContrastiveEmbedding
from contrastive_seq.data.synthetic import synthetic_place_cells
from contrastive_seq.evaluation.decoding import knn_decode
from contrastive_seq.plotting import plot_embedding_panels

TRACK_LENGTH_M = 1.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps")
    parser.add_argument("--output", type=Path, default=Path("runs/neural_embedding"))
    args = parser.parse_args()

    # neural (T, 40) spike counts; behaviour (T, 2) = [position, direction]; direction (T,) 0 / 1
    recording = synthetic_place_cells(num_neurons=40, num_timepoints=10_000, seed=0)
    neural, behaviour, direction = recording.neural.numpy(), recording.continuous.numpy(), recording.discrete.numpy()
    cut = int(0.8 * len(neural))

    model = ContrastiveEmbedding(
        model_architecture="offset10",  # receptive field: 10 bins
        output_dimension=3,
        num_hidden_units=32,
        conditional="time_delta",  # positives: time points whose behaviour matches a plausible change of the reference's
        time_offsets=10,
        batch_size=512,
        max_iterations=args.steps,
        random_state=0,
    )
    model.fit(neural[:cut], behaviour[:cut])
    train_embedding = model.transform(neural[:cut])  # (8000, 3)
    test_embedding = model.transform(neural[cut:])  # (2000, 3)

    position = knn_decode(train_embedding, behaviour[:cut, 0], test_embedding, behaviour[cut:, 0], k=10)
    run_direction = knn_decode(train_embedding, direction[:cut], test_embedding, direction[cut:], k=10)
    print(f"held-out position: median error {position['median_absolute_error'] * TRACK_LENGTH_M * 100:.1f} cm, "
          f"R2 {position['r2']:.3f}; direction accuracy {run_direction['accuracy']:.3f}")

    args.output.mkdir(parents=True, exist_ok=True)
    plot_embedding_panels(
        test_embedding,
        [(behaviour[cut:, 0] * TRACK_LENGTH_M, "position (m)", None),
         (direction[cut:], "direction", ("leftward", "rightward"))],
        args.output / "embedding.png",
        title="held-out embedding",
    )
    model.save(args.output / "model.pt")
    print(f"wrote {args.output / 'embedding.png'} and {args.output / 'model.pt'}")


if __name__ == "__main__":
    main()
