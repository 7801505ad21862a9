"""Input checks shared by every loss: each names the argument and what was expected."""

from __future__ import annotations

import torch


def check_embeddings(name: str, x: object, rank: int = 2, min_rows: int = 1) -> torch.Tensor:
    """Check that ``x`` is a finite floating tensor of the given rank with rows.

    Args:
        name: the argument's name, used in the error.
        x: the value passed.
        rank: expected number of dimensions (2 for ``(batch, dim)``).
        min_rows: least size of the first dimension.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows, got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty embedding dimension, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_same_dtype(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require one dtype, except under autocast (which casts the products itself)."""
    if a.dtype != b.dtype and not torch.is_autocast_enabled(a.device.type):
        raise TypeError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require two embedding tensors to have one shape (and one dtype outside autocast)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    _check_same_dtype(name_a, a, name_b, b)


def check_same_dim(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require two embedding tensors to share their last (embedding) dimension (and their dtype outside autocast)."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_b} must have embedding dimension {a.shape[-1]} like {name_a}, got shape {tuple(b.shape)}"
        )
    _check_same_dtype(name_a, a, name_b, b)


def check_labels(name: str, labels: object, length: int) -> torch.Tensor:
    """Check that ``labels`` is an integer vector of ``length`` entries."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(labels.shape)}")
    return labels


def check_has_negative(candidates: int, excluded: bool) -> None:
    """A contrastive loss needs a negative besides the positive in every row of ``candidates`` columns.

    With one candidate left (a batch of one: the positive alone) the loss is 0
    whatever the embeddings, so nothing would be learned.

    Raises:
        ValueError: when ``candidates`` minus the excluded one (the query itself) is below 2.
    """
    if candidates - excluded < 2:
        raise ValueError(
            f"a contrastive loss needs a negative besides the positive in every row, got {candidates} candidate(s)"
            + (" with one excluded (the query itself)" if excluded else "")
            + "; a batch of one has no negative: use batch_size >= 2"
        )


def check_positive_number(name: str, value: float) -> float:
    """Require a finite number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)
