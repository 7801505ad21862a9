"""A package's public names imported on first use, so that importing the package loads no heavy dependency.

In a package's ``__init__.py``::

    __getattr__, __dir__ = lazy_attributes(__name__, {"Trainer": "contrastive_seq.training.trainer"})

``package.Trainer`` then imports ``contrastive_seq.training.trainer`` when it
is first read; ``from package import submodule`` works as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_attributes(
    package: str, modules: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose names ``modules`` maps to the module defining each."""

    def __getattr__(name: str) -> object:
        if name in modules:
            return getattr(import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *modules})

    return __getattr__, __dir__
