"""Checkpoints written atomically and read without running code.

A checkpoint is a dict of tensors and plain Python containers (dict, list,
tuple, str, int, float, bool, None), so ``torch.load(weights_only=True)``
reads it. :func:`rng_state` turns every global random stream into that form.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive_seq.atomic_files import write_atomically


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (corrupt, truncated, unsafe or not a checkpoint)."""


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically.

    The state goes to a temporary file in the same directory, which is flushed,
    fsynced and then renamed over ``path`` (``os.replace``), so ``path`` always
    holds either the previous checkpoint or the complete new one. On any
    failure the temporary file is removed and the previous checkpoint is left
    as it was. After a successful write, temporary files for ``path`` that a
    killed writer left behind are deleted. The directory is created when missing.

    Raises:
        OSError: naming ``path`` when writing fails (disk full, no permission).
        CheckpointError: naming ``path`` when ``torch.save`` fails otherwise
            (an object that cannot be pickled, a write error torch reports itself).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: torch.save(dict(state), file))
    except OSError as exc:
        message = f"could not save checkpoint {path} ({exc.strerror or exc}); any previous checkpoint there is intact"
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
    except Exception as exc:
        raise CheckpointError(
            f"could not save checkpoint {path} ({type(exc).__name__}: {exc}); any previous checkpoint there is intact"
        ) from exc


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Tensors are mapped to ``map_location`` (CPU by default; ``load_state_dict``
    moves them to the parameters' device).

    Raises:
        FileNotFoundError: naming ``path`` when there is no file.
        CheckpointError: naming ``path`` when the file is corrupt, truncated,
            holds objects that weights-only loading refuses, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {path} could not be loaded: it is corrupt, truncated, or holds objects that "
            f"weights-only loading refuses ({type(exc).__name__}: {reason})"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def rng_state() -> dict[str, Any]:
    """Every global random stream as tensors and plain values.

    Keys: ``"torch"`` (CPU generator, uint8 tensor), ``"numpy"`` (legacy global
    ``RandomState``), ``"python"`` (``random`` module) and, once CUDA is
    initialised, ``"cuda"`` (the current device's generator).
    """
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "algorithm": str(algorithm),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the streams captured by :func:`rng_state` (``"cuda"`` only when present and CUDA is available)."""
    torch.set_rng_state(state["torch"].cpu())
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["algorithm"],
            saved["keys"].cpu().numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    saved = state["python"]
    random.setstate((saved["version"], tuple(saved["internal"].tolist()), saved["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
