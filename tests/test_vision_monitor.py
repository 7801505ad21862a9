"""The collapse monitor against its definition: std per dimension of L2-normalised embeddings, vs 1/sqrt(d)."""

import math

import pytest
import torch

from contrastive_seq.training.monitor import collapse_scores, normalized_embedding_std


def reference_std(embeddings: torch.Tensor) -> float:
    """Loop by loop: normalise every row, then the (unbiased) std of every column, then their mean."""
    rows = [[float(v) for v in row] for row in embeddings]
    unit = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in rows]
    n, d = len(unit), len(unit[0])
    stds = []
    for j in range(d):
        column = [unit[i][j] for i in range(n)]
        mean = sum(column) / n
        stds.append(math.sqrt(sum((x - mean) ** 2 for x in column) / (n - 1)))
    return sum(stds) / d


def test_matches_the_loop_reference():
    embeddings = torch.randn(13, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2, 3, 4, 5])
    assert normalized_embedding_std(embeddings) == pytest.approx(reference_std(embeddings), rel=1e-12)


def test_collapse_reads_zero_and_a_spread_over_the_sphere_reads_one():
    collapsed = torch.ones(100, 32) * torch.randn(1, 32)
    assert collapse_scores(collapsed) == {"embedding_std": 0.0, "embedding_std_ratio": 0.0}
    spread = torch.randn(20_000, 32, generator=torch.Generator().manual_seed(1))  # isotropic: uniform directions
    scores = collapse_scores(spread)
    assert scores["embedding_std"] == pytest.approx(1 / math.sqrt(32), rel=0.02)
    assert scores["embedding_std_ratio"] == pytest.approx(1, rel=0.02)


def test_dimensional_collapse_lowers_the_ratio():
    spread = torch.randn(5_000, 32, generator=torch.Generator().manual_seed(2))
    spread[:, 4:] = 0  # only 4 of 32 dimensions used
    ratio = collapse_scores(spread)["embedding_std_ratio"]
    expected = (4 * math.sqrt(1 / 4) / 32) * math.sqrt(32)  # 4 coordinates of variance 1/4, 28 of variance 0
    assert ratio == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("bad", [torch.zeros(1, 4), torch.zeros(5), torch.zeros(3, 4, dtype=torch.long), [[1.0, 2.0]]])
def test_bad_embeddings_are_refused(bad):
    with pytest.raises(ValueError, match="embeddings"):
        normalized_embedding_std(bad)
