"""Figures render under Agg to non-empty PNGs, and their Axes hold the data they were given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from contrastive_seq.plotting import plot_consistency, plot_embedding, plot_loss, plot_temperature  # noqa: E402
from contrastive_seq.training.metrics import MetricsWriter  # noqa: E402

T = 120


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saved(ax, path) -> int:
    ax.figure.savefig(path)
    return path.stat().st_size


def points_in(ax) -> int:
    return sum(len(collection.get_offsets()) for collection in ax.collections)


def embedding(dim: int = 3) -> torch.Tensor:
    return torch.randn(T, dim, generator=torch.Generator().manual_seed(0))


def test_embedding_coloured_by_continuous_label_has_a_colourbar(tmp_path):
    ax = plot_embedding(embedding(), labels=torch.linspace(0, 1, T), label_name="position")
    assert saved(ax, tmp_path / "continuous.png") > 0
    assert points_in(ax) == T
    assert len(ax.figure.axes) == 2  # the scatter and its colourbar
    assert ax.figure.axes[1].get_ylabel() == "position"


def test_embedding_coloured_by_discrete_label_has_a_legend_per_class(tmp_path):
    labels = np.arange(T) % 3
    ax = plot_embedding(embedding().numpy(), labels=labels, dims=(2, 0))
    assert saved(ax, tmp_path / "discrete.png") > 0
    assert points_in(ax) == T
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("dim 2", "dim 0")
    for cls, collection in zip(range(3), ax.collections):  # each class's points, at dims (2, 0)
        np.testing.assert_allclose(collection.get_offsets(), embedding().numpy()[labels == cls][:, [2, 0]], rtol=1e-6)


def test_embedding_in_3d_and_into_a_given_axes(tmp_path):
    ax = plot_embedding(embedding(), dims=(0, 1, 2))
    assert ax.name == "3d"
    assert saved(ax, tmp_path / "3d.png") > 0
    assert points_in(ax) == T
    _, given = plt.subplots()
    assert plot_embedding(embedding(), ax=given) is given
    assert points_in(given) == T


def test_bad_embedding_plots_are_rejected():
    with pytest.raises(ValueError, match="dims must be 2 or 3 distinct int indices below 3"):
        plot_embedding(embedding(), dims=(0, 3))
    with pytest.raises(ValueError, match="dims must be"):
        plot_embedding(embedding(), dims=(1, 1))
    with pytest.raises(ValueError, match=rf"labels must have shape \({T},\)"):
        plot_embedding(embedding(), labels=np.zeros(T - 1))
    with pytest.raises(ValueError, match="ax must be a 3-D Axes"):
        plot_embedding(embedding(), dims=(0, 1, 2), ax=plt.subplots()[1])


def trainer_records() -> list[dict]:
    records = []
    for step in range(10, 110, 10):
        records.append({"step": step, "loss": 5.0 / step, "parts": {"temperature": 0.1 + step / 1000, "accuracy": 0.5}})
    records.append({"step": 100, "eval": {"knn": 0.9}})  # an evaluation-only record has no loss
    return records


def test_loss_and_temperature_from_a_metrics_file_written_by_the_trainer(tmp_path):
    records = trainer_records()
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path, enabled=True) as writer:
        for record in records:
            writer.write(record)
    logged = records[:-1]
    curves = ((plot_loss, [r["loss"] for r in logged]), (plot_temperature, [r["parts"]["temperature"] for r in logged]))
    for plot, expected in curves:
        ax = plot(path)
        assert saved(ax, tmp_path / f"{plot.__name__}.png") > 0
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), [r["step"] for r in logged])
        np.testing.assert_allclose(line.get_ydata(), expected)


def test_curves_from_a_list_of_dicts_with_a_gap_for_null():
    records = trainer_records()
    records[2]["loss"] = None  # a NaN loss is written as null
    (line,) = plot_loss(records).get_lines()
    assert len(line.get_xdata()) == len(records) - 1
    assert np.isnan(line.get_ydata()[2])


def test_temperature_missing_is_an_error_and_a_torn_line_is_skipped(tmp_path):
    with pytest.raises(ValueError, match="parts/temperature"):
        plot_temperature([{"step": 1, "loss": 1.0, "parts": {}}])
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    (line,) = plot_loss(path).get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [1, 2])
    with pytest.raises(TypeError, match="metrics must be a list of dicts"):
        plot_loss(3)


def test_consistency_heatmap(tmp_path):
    matrix = np.array([[np.nan, 0.9, 0.2], [0.8, np.nan, 0.3], [0.1, 0.4, np.nan]])
    ax = plot_consistency(matrix, ["run 0", "run 1", "run 2"])
    assert saved(ax, tmp_path / "consistency.png") > 0
    (image,) = ax.get_images()
    np.testing.assert_array_equal(image.get_array().filled(np.nan), matrix)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["run 0", "run 1", "run 2"]
    assert sorted(float(t.get_text()) for t in ax.texts) == sorted(matrix[np.isfinite(matrix)].round(2))
    with pytest.raises(ValueError, match="labels must name the 3 rows"):
        plot_consistency(matrix, ["a", "b"])
    with pytest.raises(ValueError, match="matrix must be square"):
        plot_consistency(np.zeros((2, 3)), ["a", "b"])


def test_embedding_legend_names_classes_and_a_3d_colourbar_leaves_the_axis_labels_visible(tmp_path):
    from contrastive_seq.plotting import plot_embedding_panels

    position = torch.linspace(0, 1.6, T)
    direction = torch.arange(T) % 2
    path = plot_embedding_panels(
        embedding(), [(position, "position (m)", None), (direction, "direction", ("leftward", "rightward"))],
        tmp_path / "embedding.png",
    )
    assert path.stat().st_size > 0
    ax = plot_embedding(embedding(), labels=direction, dims=(0, 1, 2), class_names=("leftward", "rightward"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["leftward", "rightward"]
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert colours[0] != colours[1]
    ax = plot_embedding(embedding(), labels=position, dims=(0, 1, 2), label_name="position (m)")
    figure = ax.figure
    figure.set_size_inches(6, 5)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    colourbar = figure.axes[1]
    assert colourbar.get_ylabel() == "position (m)"
    assert colourbar.get_ylim()[1] == pytest.approx(1.6)  # coloured in metres, not 0-1
    z_label = ax.zaxis.label.get_window_extent(renderer)
    assert not z_label.overlaps(colourbar.get_tightbbox(renderer)), "the colourbar hides the third axis label"
    for axis, limits in zip((ax.xaxis, ax.yaxis, ax.zaxis), (ax.get_xlim(), ax.get_ylim(), ax.get_zlim())):
        shown = [tick for tick in axis.get_major_locator()() if limits[0] <= tick <= limits[1]]
        assert len(shown) <= 5  # few ticks: the labels of a small panel do not collide
    with pytest.raises(ValueError, match="class_names must name every class value"):
        plot_embedding(embedding(), labels=direction + 1, class_names=("only one",))
