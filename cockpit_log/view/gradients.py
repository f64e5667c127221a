"""Center column of Figure 2: gradient noise (the gradient tests gauge) and gradient-element histograms."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.patches import Circle

from ..records import Histogram1d, Histogram2d
from ..render import draw_histogram1d, draw_histogram2d
from .data import RunData, format_step_axis, no_data, plot_series
from .panel import Panel, host_axes

__all__ = ["GRADIENT_TESTS", "GRAD_HIST_1D", "GRAD_HIST_2D", "TEST_STYLE"]

#: quantity -> (colour, symbol of its value in the paper)
TEST_STYLE: dict[str, tuple[str, str]] = {
    "NormTest": ("tab:blue", "θ_norm"),
    "InnerTest": ("tab:orange", "θ_inner"),
    "OrthoTest": ("tab:green", "ν"),
}


def _latest_finite(data: RunData, quantity: str) -> tuple[int, float] | None:
    steps, values = data.series(quantity)
    return (int(steps[-1]), float(values[-1])) if len(steps) else None


def _gauge(ax: Axes, data: RunData) -> None:
    """Figure 9b: the normalized g_B, the norm test's ball and the inner/orthogonality test bands."""
    latest = {q: _latest_finite(data, q) for q in TEST_STYLE}
    shown = {q: v for q, v in latest.items() if v is not None}
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("parallel to g_B (‖g_B‖ = 1)")
    ax.set_ylabel("orthogonal to g_B")
    if not shown:
        no_data(ax, "gradient test", next(filter(None, (data.reason(q) for q in TEST_STYLE)), None))
        return
    reach = max(1.0, *(v for _, v in shown.values()))
    if "OrthoTest" in shown:
        nu = shown["OrthoTest"][1]
        color, sym = TEST_STYLE["OrthoTest"]
        ax.axhspan(-nu, nu, color=color, alpha=0.18, label=f"OrthoTest {sym} = {nu:.3g}")
    if "InnerTest" in shown:
        th = shown["InnerTest"][1]
        color, sym = TEST_STYLE["InnerTest"]
        ax.axvspan(1 - th, 1 + th, color=color, alpha=0.18, label=f"InnerTest {sym} = {th:.3g}")
    if "NormTest" in shown:
        r = shown["NormTest"][1]
        color, sym = TEST_STYLE["NormTest"]
        ax.add_patch(Circle((1.0, 0.0), r, fill=False, color=color, linewidth=2, label=f"NormTest {sym} = {r:.3g}"))
    ax.annotate("", xy=(1, 0), xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.5})
    ax.plot([1], [0], "k.", markersize=6)
    ax.set_xlim(min(-0.2, 1 - 1.15 * reach), 1 + 1.15 * reach)
    ax.set_ylim(-1.15 * reach, 1.15 * reach)
    step = max(s for s, _ in shown.values())
    ax.set_title(f"at step {step}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)


def _gradient_tests(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """The gauge at the latest step beside the history of the three tests."""
    host, spec = host_axes(fig, spec)
    grid = spec.subgridspec(1, 2, width_ratios=(1, 1.25), wspace=0.1)
    gauge = fig.add_subplot(grid[0, 0])
    _gauge(gauge, data)
    hist = fig.add_subplot(grid[0, 1])
    steps: list[np.ndarray] = []
    for q, (color, sym) in TEST_STYLE.items():
        if plot_series(hist, data, q, label=f"{q} ({sym})", color=color):
            steps.append(data.series(q)[0])
    if steps:
        values = np.concatenate([data.series(q)[1] for q in TEST_STYLE])
        if values.min() > 0 and values.max() / values.min() > 30:
            hist.set_yscale("log")
        hist.legend(fontsize=7, title="history", title_fontsize=8)
        format_step_axis(hist, np.concatenate(steps))
    else:
        hist.set_xlabel("step")
    hist.set_ylabel("test value (smallest passing)")
    return host


def _grad_hist_1d(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """The latest network-wide histogram of individual gradient elements on the recorded range."""
    ax = fig.add_subplot(spec)
    ax.set_xlabel("individual gradient element g_n(θ)_j")
    ax.set_ylabel("count")
    rec = data.latest("GradHist1d", Histogram1d)
    if rec is None:
        no_data(ax, "GradHist1d")
        return ax
    h = rec.value
    assert isinstance(h, Histogram1d)
    draw_histogram1d(ax, h, clipped_color="tab:red")
    outside = (h.below + h.above) / h.total if h.total else 0.0
    note = f"{outside:.1%} of {h.total:,} outside [{h.edges[0]:g}, {h.edges[-1]:g}]"
    if h.nonfinite:
        note += f", {h.nonfinite:,} NaN"
    ax.text(
        0.02,
        0.97,
        note,
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        color="tab:red" if outside or h.nonfinite else "0.25",
        bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0},
    )
    ax.set_title(f"step {rec.step}", loc="right", fontsize=8)
    return ax


def _grad_hist_2d(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """The latest joint histogram of parameters and individual gradient elements, with marginals."""
    rec = data.latest("GradHist2d", Histogram2d)
    if rec is None:
        ax = fig.add_subplot(spec)
        no_data(ax, "GradHist2d")
        return ax
    h = rec.value
    assert isinstance(h, Histogram2d)
    host, spec = host_axes(fig, spec)
    axes = draw_histogram2d(fig, spec, h)
    clipped = h.x_below + h.x_above + h.y_below + h.y_above
    note = f"step {rec.step}" + (f", {clipped:,} clipped to edge bins" if clipped else "")
    axes.top.text(0.01, 0.95, note, transform=axes.top.transAxes, va="top", fontsize=8)
    return host


GRADIENT_TESTS = Panel("gradient_tests", "Gradient tests", tuple(TEST_STYLE), 1, _gradient_tests)
GRAD_HIST_1D = Panel("grad_hist_1d", "Gradient element histogram", ("GradHist1d",), 1, _grad_hist_1d)
GRAD_HIST_2D = Panel("grad_hist_2d", "Parameters vs. gradient elements", ("GradHist2d",), 1, _grad_hist_2d)
