"""CPC's per-step InfoNCE: against a loop from the formula, its negatives against their definitions, ln(1 + N) at init."""

import math

import pytest
import torch

from contrastive_seq.losses.cpc import CPCLoss, draw_negatives
from contrastive_seq.methods.cpc import CPC
from contrastive_seq.models.cpc import StepPredictors, make_context_model, series_encoder


def reference_loss(predictions, targets, index, temperature=1.0):
    """Loop over k, b, t: -log softmax of the positive among [positive, negatives], mean over (b, t), then over k."""
    steps, batch, frames, dim = predictions.shape
    flat = targets.reshape(batch * frames, dim)
    per_step, accuracy = [], []
    for k in range(1, steps + 1):
        losses, hits = [], []
        for b in range(batch):
            for t in range(frames - k):
                p = predictions[k - 1, b, t]
                scores = [float(p @ targets[b, t + k]) / temperature]
                scores += [float(p @ flat[j]) / temperature for j in index[b, t + k].tolist()]
                log_denominator = math.log(sum(math.exp(s) for s in scores))
                losses.append(log_denominator - scores[0])
                hits.append(scores[0] >= max(scores[1:]))  # the first maximum wins a tie, as argmax does
        per_step.append(sum(losses) / len(losses))
        accuracy.append(sum(hits) / len(hits))
    return sum(per_step) / steps, per_step, accuracy


@pytest.mark.parametrize("source", ["batch", "sequence", "speaker"])
def test_loss_matches_loop_reference(source):
    torch.manual_seed(0)
    steps, batch, frames, dim, negatives = 3, 4, 7, 5, 6
    # small integers: every score is exact whatever the summation order, so ties are ties in both versions
    predictions = torch.randint(-2, 3, (steps, batch, frames, dim)).float()
    targets = torch.randint(-2, 3, (batch, frames, dim)).float()
    labels = torch.tensor([0, 1, 0, 1])
    loss = CPCLoss(negatives, source, temperature=0.5)
    out = loss(predictions, targets, torch.Generator().manual_seed(3), labels)
    index = draw_negatives(batch, frames, negatives, source, torch.Generator().manual_seed(3), labels)
    expected, per_step, accuracy = reference_loss(predictions, targets, index, temperature=0.5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    for k in range(1, steps + 1):
        assert out.parts[f"loss_k{k}"].item() == pytest.approx(per_step[k - 1], rel=1e-5)
        assert out.parts[f"accuracy_k{k}"].item() == pytest.approx(accuracy[k - 1])


def test_negatives_follow_their_definitions():
    batch, frames, n = 6, 10, 4000
    labels = torch.tensor([5, 7, 5, 9, 7, 5])
    generator = torch.Generator().manual_seed(0)
    for source in ("batch", "sequence", "speaker"):
        rows = draw_negatives(batch, frames, n, source, generator, labels) // frames
        times = draw_negatives(batch, frames, n, source, generator, labels) % frames
        # time of a negative: uniform over the frames
        counts = torch.bincount(times.flatten(), minlength=frames).float()
        assert (counts / counts.sum() - 1 / frames).abs().max() < 0.01
        for b in range(batch):
            drawn = torch.bincount(rows[b].flatten(), minlength=batch).float() / rows[b].numel()
            if source == "sequence":
                allowed = torch.arange(batch) == b
            elif source == "speaker":
                allowed = labels == labels[b]
            else:
                allowed = torch.ones(batch, dtype=torch.bool)
            expected = allowed.float() / allowed.sum()
            assert (drawn - expected).abs().max() < 0.02, (source, b, drawn)


def test_loss_at_initialisation_is_log_one_plus_negatives():
    torch.manual_seed(0)
    for context in ("gru", "lstm", "transformer"):
        encoder = series_encoder(3, hidden_dim=32, kernel_size=3, num_layers=2)
        method = CPC(encoder, make_context_model(context, 32, 32), StepPredictors(32, 32, 4), CPCLoss(20, "batch"))
        out = method.training_step({"crops": torch.randn(8, 60, 3), "seed": torch.tensor(1)})
        assert out.loss.item() == pytest.approx(math.log(21), rel=0.03), context


def test_bad_arguments_are_named():
    loss = CPCLoss(4, "speaker")
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="labels"):
        loss(torch.randn(2, 3, 5, 4), torch.randn(3, 5, 4), generator)
    with pytest.raises(ValueError, match="K=5"):
        CPCLoss(4)(torch.randn(5, 3, 5, 4), torch.randn(3, 5, 4), generator)
    with pytest.raises(ValueError, match="predictions"):
        CPCLoss(4)(torch.randn(2, 3, 5, 6), torch.randn(3, 5, 4), generator)
    with pytest.raises(ValueError, match="negatives must be one of"):
        CPCLoss(4, "chapter")
    with pytest.raises(ValueError, match="num_negatives"):
        CPCLoss(0)
