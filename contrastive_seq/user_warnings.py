"""Warnings reported at the user's line: the first caller outside this package.

A fixed ``stacklevel`` counts the frames between ``warnings.warn`` and the
user's call, and is wrong as soon as one of them moves (a helper split off,
another entry point such as the estimator or ``run_experiment``). Python
3.12 has ``warnings.warn(..., skip_file_prefixes=...)`` for this; on 3.11 the
level is counted here, by walking the stack to the first frame whose file
lies outside the package.
"""

from __future__ import annotations

import inspect
import os
import warnings

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the nearest caller whose file is outside the package."""
    frame, level = inspect.currentframe(), 1  # stacklevel 1 is this function's own frame
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    del frame  # no reference cycle through the frame
    warnings.warn(message, category, stacklevel=level)
