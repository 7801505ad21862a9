"""Figures with matplotlib: embeddings, training curves and consistency matrices.

Every function draws into ``ax`` when one is given, or into a new pyplot
figure (so notebooks show it), and returns the Axes; the figure is
``ax.figure``. Nothing here calls ``plt.show`` or picks a backend, so the
functions work under Agg; close figures made in a loop with
``plt.close(ax.figure)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from contrastive_seq.atomic_files import write_atomically

from contrastive_seq.evaluation.decoding import is_discrete
from contrastive_seq.evaluation.probes import as_numpy

Metrics = Sequence[Mapping[str, Any]] | str | os.PathLike


def _new_axes(projection: str | None = None) -> Axes:
    return plt.figure().add_subplot(projection=projection)


def plot_embedding(
    embedding: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None = None,
    dims: tuple[int, int] | tuple[int, int, int] = (0, 1),
    ax: Axes | None = None,
    cmap: str | None = None,
    s: float = 1.0,
    label_name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Axes:
    """Scatter an embedding ``(T, dim)`` in 2-D or 3-D, coloured by a label.

    Args:
        embedding: ``(T, dim)``, e.g. the output of ``embed_sequence``.
        labels: ``None`` (one colour), continuous ``(T,)`` floats (a colour map
            and a colourbar) or discrete ``(T,)`` integers/bools (one colour per
            class and a legend).
        dims: the 2 or 3 embedding dimensions to show.
        ax: Axes to draw into (a 3-D Axes for 3 dims); ``None`` makes a figure.
        cmap: colour map name; default ``"viridis"`` for continuous labels and
            ``"tab10"`` for discrete ones.
        s: marker size.
        label_name: title of the colourbar or legend (give the unit: ``"position (m)"``).
        class_names: legend entry of each discrete class value ``0, 1, ...``
            (``("leftward", "rightward")``); default: the values themselves.

    Each axis shows at most four ticks, so that the tick labels of a small
    panel do not run into each other; in 3-D the colourbar sits clear of the
    third axis label.

    Returns:
        The Axes; its collections hold the ``T`` points.
    """
    points = as_numpy(embedding)
    if points.ndim != 2 or len(points) < 1:
        raise ValueError(f"embedding must have shape (T, dim) with T >= 1, got {points.shape}")
    dims = tuple(dims)
    if (
        len(dims) not in (2, 3)
        or len(set(dims)) != len(dims)
        or not all(isinstance(d, int) and 0 <= d < points.shape[1] for d in dims)
    ):
        raise ValueError(f"dims must be 2 or 3 distinct int indices below {points.shape[1]}, got {dims}")
    values = None if labels is None else as_numpy(labels)
    if values is not None and values.shape != (len(points),):
        raise ValueError(f"labels must have shape ({len(points)},) like the embedding's rows, got {values.shape}")
    discrete = values is not None and is_discrete(values)
    projection = "3d" if len(dims) == 3 else None
    if ax is None:
        ax = _new_axes(projection)
    elif (ax.name == "3d") != (projection == "3d"):
        raise ValueError(f"ax must be a {'3-D' if projection else '2-D'} Axes for dims={dims}, got a {ax.name} Axes")
    coordinates = [points[:, d] for d in dims]
    axes = (ax.xaxis, ax.yaxis, ax.zaxis) if projection else (ax.xaxis, ax.yaxis)
    for axis, d in zip(axes, dims):
        axis.set_label_text(f"dim {d}")
        axis.set_major_locator(MaxNLocator(4))
    if values is None:
        ax.scatter(*coordinates, s=s)
    elif not discrete:
        scatter = ax.scatter(*coordinates, c=values, cmap=cmap or "viridis", s=s)
        # in 3-D the default colourbar overlaps the z label: move it out and shrink it
        ax.figure.colorbar(scatter, ax=ax, label=label_name, **({"pad": 0.15, "shrink": 0.7} if projection else {}))
    else:
        classes = np.unique(values)
        if class_names is not None and not all(float(c).is_integer() and 0 <= c < len(class_names) for c in classes):
            raise ValueError(f"class_names must name every class value 0..{len(class_names) - 1}, got values {classes}")
        palette = colormaps[cmap or "tab10"]
        if not (isinstance(palette, ListedColormap) and palette.N >= len(classes)):
            palette = palette.resampled(len(classes))  # a qualitative map keeps its first, most distinct colours
        colours = palette(range(len(classes)))
        for cls, colour in zip(classes, colours):
            chosen = values == cls
            name = str(cls) if class_names is None else class_names[int(cls)]
            ax.scatter(*(c[chosen] for c in coordinates), color=colour, s=s, label=name)
        ax.legend(title=label_name, markerscale=max(1.0, 4.0 / s))
    return ax


Panel = tuple["torch.Tensor | np.ndarray", str, "Sequence[str] | None"]


def plot_embedding_panels(
    embedding: torch.Tensor | np.ndarray, panels: Sequence[Panel], path: str | os.PathLike, title: str = "embedding"
) -> Path:
    """One panel per label, side by side, of an embedding ``(T, dim)`` (3-D when ``dim >= 3``); saved to ``path``.

    Each panel is ``(labels (T,), label name with its unit, class names or None)``;
    the panel's title says what colours it. Returns ``path``.
    """
    dims = (0, 1, 2) if as_numpy(embedding).shape[1] >= 3 else (0, 1)
    projection = "3d" if len(dims) == 3 else None
    figure = plt.figure(figsize=(6.0 * len(panels), 5.0))
    for column, (labels, name, classes) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), column + 1, projection=projection)
        plot_embedding(embedding, labels, dims=dims, ax=ax, label_name=name, class_names=classes)
        ax.set_title(f"{title}, coloured by {name.split(' (')[0]}")
    return save_figure(figure, path)


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically (no torn file), close it and return ``path``."""
    figure.tight_layout()
    try:
        return write_atomically(path, lambda file: figure.savefig(file, dpi=dpi, format="png"))
    finally:
        plt.close(figure)


def _read_metrics(metrics: Metrics) -> list[Mapping[str, Any]]:
    """Records from a list of dicts or a ``metrics.jsonl`` file (a torn, unparsable line is skipped)."""
    if isinstance(metrics, (str, os.PathLike)):
        records = []
        for line in Path(metrics).read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
    if isinstance(metrics, Sequence) and all(isinstance(r, Mapping) for r in metrics):
        return list(metrics)
    raise TypeError(f"metrics must be a list of dicts or a path to metrics.jsonl, got {type(metrics).__name__}")


def _lookup(record: Mapping[str, Any], key: tuple[str, ...]) -> tuple[bool, Any]:
    """``(True, value)`` for ``record[key[0]][key[1]]...``, ``(False, None)`` when a level is missing."""
    value: Any = record
    for part in key:
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _plot_series(metrics: Metrics, key: tuple[str, ...], ax: Axes | None, log_y: bool) -> Axes:
    """One line of ``record[key...]`` against ``record["step"]`` over the records that have it (``None`` is a gap)."""
    steps, values = [], []
    for record in _read_metrics(metrics):
        found, value = _lookup(record, key)
        if found and "step" in record:
            steps.append(record["step"])
            values.append(np.nan if value is None else float(value))
    name = "/".join(key)
    if not steps:
        raise ValueError(f"metrics must hold records with 'step' and {name!r}, found none")
    ax = ax or _new_axes()
    ax.plot(steps, values)
    ax.set_xlabel("step")
    ax.set_ylabel(key[-1])
    if log_y:
        ax.set_yscale("log")
    return ax


def plot_loss(metrics: Metrics, ax: Axes | None = None) -> Axes:
    """The training loss against the step, from the Trainer's records (a list of dicts or a ``metrics.jsonl`` path).

    Records without ``"loss"`` (evaluation-only steps) are skipped. Returns the Axes holding one line.
    """
    return _plot_series(metrics, ("loss",), ax, log_y=False)


def plot_temperature(metrics: Metrics, ax: Axes | None = None) -> Axes:
    """The InfoNCE temperature (``record["parts"]["temperature"]``) against the step, on a log scale.

    Raises ``ValueError`` when no record has a temperature. Returns the Axes holding one line.
    """
    return _plot_series(metrics, ("parts", "temperature"), ax, log_y=True)


def plot_consistency(
    matrix: np.ndarray | torch.Tensor, labels: Sequence[str], ax: Axes | None = None, cmap: str = "viridis"
) -> Axes:
    """Heatmap of a consistency matrix ``(n, n)`` (R², row = source, column = target) with its values written in.

    NaN cells (the diagonal of :func:`~contrastive_seq.evaluation.consistency.consistency_matrix`)
    are left blank. ``labels`` names the ``n`` runs or sessions. Returns the Axes.
    """
    values = as_numpy(matrix).astype(float)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or len(values) < 1:
        raise ValueError(f"matrix must be square (n, n), got shape {values.shape}")
    if len(labels) != len(values):
        raise ValueError(f"labels must name the {len(values)} rows of matrix, got {len(labels)}")
    ax = ax or _new_axes()
    image = ax.imshow(values, cmap=cmap)
    ax.figure.colorbar(image, ax=ax, label="R²")
    ticks = range(len(values))
    ax.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark_cell = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # ITU-R BT.601 luma
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if dark_cell else "black")
    return ax
