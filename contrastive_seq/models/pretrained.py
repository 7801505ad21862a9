"""Pretrained weights from local files, loaded without running code, checked against the model.

``read_weights`` reads a state dict from a ``.safetensors`` file (safetensors)
or a ``.pt`` / ``.pth`` / ``.bin`` file (``torch.load(weights_only=True)``: a
pickle that would run code is refused). Training checkpoints that wrap the
weights (``{"state_dict": ...}``, ``{"model": ...}``) and DDP's ``module.``
prefix are unwrapped, as open_clip and timm do. ``load_weights`` puts them
into a module after comparing every name and shape, so weights that do not
fit are an error naming the file and the first parameter that does not fit,
never a half-loaded model. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

#: file extensions read with safetensors / with weights-only torch.load
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
#: keys under which training checkpoints keep the weights
WRAPPER_KEYS = ("state_dict", "model", "module")


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict ``{name: tensor}`` in a local weights file, on the CPU.

    Raises:
        FileNotFoundError: naming ``path``.
        ValueError: naming ``path``, for an unknown extension, a file that is
            corrupt or holds objects weights-only loading refuses (a pickle that
            runs code), or one that holds no dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES:
        raise ValueError(f"weights file {path} must end in one of {SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"weights file {path} could not be read: it is corrupt, or holds objects that weights-only loading "
            f"refuses, such as a pickled model that runs code ({type(error).__name__}: {reason}); "
            "save model.state_dict() or a .safetensors file instead"
        ) from error
    while isinstance(state, Mapping):
        wrapped = [key for key in WRAPPER_KEYS if isinstance(state.get(key), Mapping)]
        if not wrapped:
            break
        state = state[wrapped[0]]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} holds no state dict (a dict of tensors by parameter name)")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def load_weights(
    module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike, ignore_missing: tuple[str, ...] = ()
) -> None:
    """Copy ``state`` into ``module`` after checking that every name and shape fits.

    Args:
        module: the model the weights are for.
        state: its state dict, as :func:`read_weights` returns.
        path: the file ``state`` came from (named in errors).
        ignore_missing: name prefixes of the module's entries the file may lack
            (they keep their initialisation).

    Raises:
        ValueError: naming ``path`` and the first entry the module lacks, lacks
            in the file, or whose shape differs (both shapes given).
    """
    own = module.state_dict()
    for name, tensor in state.items():
        if name not in own:
            raise ValueError(f"weights file {path} has {name!r}, which {type(module).__name__} does not have "
                             f"({len(set(state) - set(own))} such entries); is it the weights of another model?")
        if tensor.shape != own[name].shape:
            raise ValueError(f"weights file {path} does not fit {type(module).__name__}: the first mismatched "
                             f"parameter is {name!r}, {tuple(tensor.shape)} in the file and "
                             f"{tuple(own[name].shape)} in the model")
    missing = [name for name in own if name not in state and not name.startswith(ignore_missing)]
    if missing:
        raise ValueError(f"weights file {path} lacks {len(missing)} entries of {type(module).__name__} "
                         f"(first: {missing[0]!r})")
    module.load_state_dict(state, strict=False)


def load_weights_file(module: nn.Module, path: str | os.PathLike, ignore_missing: tuple[str, ...] = ()) -> None:
    """:func:`read_weights` then :func:`load_weights` into ``module``."""
    load_weights(module, read_weights(path), path, ignore_missing)
