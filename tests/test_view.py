"""The cockpit view: Figure 2's panels from hand-made records of every quantity and of subsets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fake_records import CURVATURE, ECONOMY, PARAMS, hist1d, log_steps, make_records
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from cockpit_log.records import Histogram1d, Record
from cockpit_log.render import draw_histogram2d, figure_png
from cockpit_log.schedules import every, log_spaced
from cockpit_log.view import cockpit_view, layer_view, layers_path_for, panel_titles, write_view
from cockpit_log.view.data import is_log_spaced
from cockpit_log.view.panel import GID_PREFIX

ALL_PANELS = {
    "alpha": "Alpha: where steps land",
    "distances": "Distances",
    "grad_norm": "Gradient norm",
    "gradient_tests": "Gradient tests",
    "grad_hist_1d": "Gradient element histogram",
    "grad_hist_2d": "Parameters vs. gradient elements",
    "hess_max_ev": "Max Hessian eigenvalue",
    "hess_trace": "Hessian trace",
    "tic": "Takeuchi information criterion",
    "loss": "Mini-batch loss",
    "time": "Wall-clock time",
    "other:MeanGSNR": "Mean gradient SNR",
    "other:CABS": "CABS batch size",
    "other:EarlyStopping": "Early-stopping criterion",
}
CURVATURE_PANELS = {"hess_max_ev", "hess_trace", "tic", "grad_hist_2d"}


def panel_axes(fig: Figure, key: str) -> Axes:
    """The titled Axes of panel ``key``."""
    return next(ax for ax in fig.axes if ax.get_gid() == GID_PREFIX + key)


def texts(ax: Axes) -> str:
    return " | ".join(t.get_text() for t in ax.texts)


def test_every_quantity_gives_every_panel_and_renders() -> None:
    fig = cockpit_view(make_records())
    assert panel_titles(fig) == ALL_PANELS
    png = figure_png(fig)
    assert png.startswith(b"\x89PNG") and len(png) > 50_000


def test_economy_subset_leaves_curvature_panels_out_and_drops_their_column() -> None:
    fig = cockpit_view(make_records(ECONOMY + ("Loss", "Time")))
    expected = {k: v for k, v in ALL_PANELS.items() if k not in CURVATURE_PANELS and not k.startswith("other:")}
    assert panel_titles(fig) == expected
    assert fig.get_size_inches()[0] == pytest.approx(12.0)  # two columns of Figure 2's three
    # the center column keeps its panels in Figure 2's order, filling the column
    tests_ax, hist_ax = panel_axes(fig, "gradient_tests"), panel_axes(fig, "grad_hist_1d")
    assert tests_ax.get_position().y0 > hist_ax.get_position().y0
    assert panel_axes(fig, "alpha").get_position().x0 < hist_ax.get_position().x0


def test_curvature_only_and_single_quantity() -> None:
    records = make_records(CURVATURE, steps=list(range(8)))
    fig = cockpit_view(records)
    assert set(panel_titles(fig)) == CURVATURE_PANELS
    trace = panel_axes(fig, "hess_trace")
    assert [line.get_label() for line in trace.get_lines()] == ["network", *PARAMS]  # network-wide and per parameter
    assert [line.get_label() for line in panel_axes(fig, "tic").get_lines()] == [
        "TICDiag (diagonal)",
        "TICTrace (trace)",
    ]
    assert list(panel_axes(fig, "hess_max_ev").get_lines()[0].get_xdata()) == list(range(8))
    latest_2d = [r for r in records if r.quantity == "GradHist2d"][-1].value
    heatmap = next(ax for ax in fig.axes if ax.get_ylabel() == "gradient element g_n(θ)_j")
    assert heatmap.collections[0].get_array().sum() == latest_2d.counts.sum()  # the latest joint counts
    fig = cockpit_view(make_records(("Loss",)))
    assert panel_titles(fig) == {"loss": "Mini-batch loss"}


def test_no_records_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cockpit records"):
        cockpit_view([])


def test_unknown_scalar_quantity_gets_its_own_panel() -> None:
    records = make_records(("GradNorm",)) + [Record(s, "MyMetric", float(s)) for s in range(5)]
    assert panel_titles(cockpit_view(records)) == {"grad_norm": "Gradient norm", "other:MyMetric": "MyMetric"}


def test_nan_readings_say_why() -> None:
    records = [Record(s, "GradNorm", math.nan, reason="batch of one sample") for s in range(3)]
    fig = cockpit_view(records)
    assert "batch of one sample" in texts(panel_axes(fig, "grad_norm"))


def test_log_spaced_steps_get_a_log_step_axis() -> None:
    fig = cockpit_view(make_records(("GradNorm", "Loss"), steps=log_steps(2000, 40)))
    assert panel_axes(fig, "grad_norm").get_xscale() == "symlog"
    assert panel_axes(fig, "grad_norm").get_xlabel() == "step (log scale)"
    fig = cockpit_view(make_records(("GradNorm", "Loss"), steps=list(range(0, 400, 10))))
    assert panel_axes(fig, "grad_norm").get_xscale() == "linear"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (list(range(100)), False),
        ([s for s in range(1000) if every(25)(s)], False),
        (sorted(log_spaced(10_000, 50).steps), True),
        (sorted(log_spaced(500, 100).steps), True),
        ([0, 1, 10, 100], False),  # too few to tell
    ],
)
def test_is_log_spaced(steps: list[int], expected: bool) -> None:
    assert is_log_spaced(steps) is expected


def test_hess_max_ev_shows_the_latest_info() -> None:
    fig = cockpit_view(make_records(("HessMaxEV",), steps=list(range(10))))
    note = texts(panel_axes(fig, "hess_max_ev"))
    assert "at step 9" in note and "hvps 23" in note and "residual 0.0001" in note


def test_gradient_histogram_highlights_values_outside_its_range() -> None:
    rng = np.random.default_rng(1)
    h = hist1d(rng, scale=0.8)  # wide: values beyond [-1, 1] land in the edge bins
    assert h.below > 0 and h.above > 0
    fig = cockpit_view([Record(0, "GradHist1d", h), Record(3, "GradHist1d", h)])
    ax = panel_axes(fig, "grad_hist_1d")
    bars = ax.patches
    assert len(bars) == 100
    red = {tuple(np.round(b.get_facecolor(), 3)) for b in (bars[0], bars[-1])}
    assert red != {tuple(np.round(bars[50].get_facecolor(), 3))}
    share = (h.below + h.above) / h.total
    assert f"{share:.1%} of {h.total:,} outside [-1, 1]" in texts(ax)
    assert ax.get_xlim() == (-1.0, 1.0)
    assert ax.get_title(loc="right") == "step 3"


def test_gradient_tests_gauge_draws_the_latest_radius_and_bands() -> None:
    records = [Record(s, q, v * (s + 1)) for s in range(4) for q, v in (("NormTest", 0.2), ("InnerTest", 0.1))]
    records += [Record(s, "OrthoTest", 0.3) for s in range(4)]
    fig = cockpit_view(records)
    gauge = next(ax for ax in fig.axes if ax.get_xlabel().startswith("parallel to g_B"))
    circles = [p for p in gauge.patches if isinstance(p, Circle)]
    assert len(circles) == 1 and circles[0].get_radius() == pytest.approx(0.8)
    assert circles[0].center == (1.0, 0.0)
    labels = [t.get_text() for t in gauge.get_legend().get_texts()]
    assert labels == ["OrthoTest ν = 0.3", "InnerTest θ_inner = 0.4", "NormTest θ_norm = 0.8"]


def test_alpha_panel_compares_the_whole_run_with_its_last_tenth() -> None:
    alphas = [-0.5] * 90 + [0.5] * 10  # the last 10 % of steps land on the other side
    fig = cockpit_view([Record(s, "Alpha", a) for s, a in enumerate(alphas)])
    labels = [t.get_text() for t in panel_axes(fig, "alpha").get_legend().get_texts()]
    assert labels == ["whole run (n=100, median -0.50)", "last 10 % (n=10, median 0.50)"]


def test_layer_grid_in_model_order_with_fallback_to_gradhist2d() -> None:
    records = make_records(("Distance", "GradHist1d"), steps=[0, 1])
    # the core records histograms in backward order; the grid shows the input side first
    reversed_hist = [
        Record(r.step, r.quantity, r.value, dict(reversed(list(r.per_param.items()))))
        if r.quantity == "GradHist1d"
        else r
        for r in records
    ]
    grid = layer_view(reversed_hist)
    assert [ax.get_title().split(" (")[0] for ax in grid.axes] == list(PARAMS)
    assert grid.get_suptitle() == "Gradient elements per parameter (GradHist1d, step 1)"
    grid2 = layer_view(make_records(("GradHist2d",), steps=[0]))
    assert grid2 is not None and len(grid2.axes) == len(PARAMS)
    assert layer_view(make_records(("GradNorm",))) is None


def test_write_view_writes_view_and_layer_grid(tmp_path: Path) -> None:
    out = write_view(make_records(ECONOMY, steps=list(range(5))), tmp_path / "sub" / "v.png")
    assert out.files == [tmp_path / "sub" / "v.png", tmp_path / "sub" / "v-layers.png"]
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in out.files)
    assert "grad_hist_1d" in out.panels
    assert layers_path_for("a/b.png").as_posix() == "a/b-layers.png"
    only_scalars = write_view(make_records(("Loss",), steps=[0, 1]), tmp_path / "l.png")
    assert only_scalars.files == [tmp_path / "l.png"]


def test_draw_histogram2d_into_a_grid_cell() -> None:
    rec = make_records(("GradHist2d",), steps=[0])[0]
    fig = Figure()
    axes = draw_histogram2d(fig, fig.add_gridspec(1, 2)[0, 1], rec.value, title="joint")
    assert axes.top.get_title().startswith("joint") and len(fig.axes) == 4  # heatmap, marginals, colorbar
    assert isinstance(rec.value.y_marginal(), Histogram1d)
