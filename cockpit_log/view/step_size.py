"""Left column of Figure 2: where steps land (Alpha), how far they go (Distances), how steep (GradNorm)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec

from ..summary import alpha_values, last_fraction
from .data import RunData, format_step_axis, no_data, plot_series
from .panel import Panel

__all__ = ["ALPHA", "DISTANCES", "GRAD_NORM"]

#: half-width of Alpha's x-range when 90 % of the readings fit; wider data widens it up to ALPHA_MAX_RANGE
ALPHA_MIN_RANGE = 1.5
ALPHA_MAX_RANGE = 3.0


def _alpha(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Distribution of alpha over the whole run and over its last 10 % (Figure 1, right)."""
    ax = fig.add_subplot(spec)
    pairs = alpha_values(data.records)
    ax.set_xlabel("α  (−1: back at start, 0: valley floor, 1: opposite wall)")
    ax.set_ylabel("density")
    if not pairs:
        no_data(ax, "Alpha", data.reason("Alpha"))
        ax.set_xlim(-ALPHA_MIN_RANGE, ALPHA_MIN_RANGE)
        return ax
    values = np.asarray([a for _, a in pairs])
    late = np.asarray(last_fraction(pairs, 0.1, data.last_step))
    half = float(np.clip(np.percentile(np.abs(values), 90) * 1.1, ALPHA_MIN_RANGE, ALPHA_MAX_RANGE))
    bins = np.linspace(-half, half, 41)
    # the parabola the steps are measured on, in axes height units, for orientation
    x = np.linspace(-half, half, 200)
    ax.plot(x, 0.9 * (x / half) ** 2, color="0.75", linewidth=1, transform=ax.get_xaxis_transform(), zorder=0)
    ax.axvline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    clipped = np.clip(values, -half, half)
    ax.hist(
        clipped,
        bins=bins,
        density=True,
        color="tab:blue",
        alpha=0.45,
        label=f"whole run (n={len(values)}, median {np.median(values):.2f})",
    )
    if len(late):
        ax.hist(
            np.clip(late, -half, half),
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.8,
            color="tab:orange",
            label=f"last 10 % (n={len(late)}, median {np.median(late):.2f})",
        )
    outside = int(np.sum(np.abs(values) > half))
    if outside:
        ax.text(
            0.01, 0.97, f"{outside} beyond ±{half:.1f}\nin the edge bins", transform=ax.transAxes, va="top", fontsize=8
        )
    ax.set_xlim(-half, half)
    ax.legend(fontsize=8, loc="upper center")
    return ax


def _distances(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Distance from initialization (left axis) and update size (right axis) over steps."""
    ax = fig.add_subplot(spec)
    steps = np.concatenate([data.series("Distance")[0], data.series("UpdateSize")[0]])
    handles = []
    if plot_series(ax, data, "Distance", label="Distance ‖θ_t − θ_0‖₂", color="tab:blue"):
        ax.set_ylabel("distance ‖θ_t − θ_0‖₂")
        handles += ax.get_lines()
    if data.has("UpdateSize"):
        upd = ax.twinx() if handles else ax
        if plot_series(upd, data, "UpdateSize", label="UpdateSize ‖θ_{t+1} − θ_t‖₂", color="tab:orange"):
            upd.set_ylabel("update size ‖θ_{t+1} − θ_t‖₂")
            handles += upd.get_lines()
    if handles:
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=8, loc="upper left")
    else:
        no_data(ax, "Distance or UpdateSize", data.reason("Distance") or data.reason("UpdateSize"))
    format_step_axis(ax, steps)
    return ax


def _grad_norm(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Mini-batch gradient norm over steps."""
    ax = fig.add_subplot(spec)
    if not plot_series(ax, data, "GradNorm", color="tab:blue"):
        no_data(ax, "GradNorm", data.reason("GradNorm"))
    ax.set_ylabel("gradient norm ‖g_B‖₂")
    format_step_axis(ax, data.series("GradNorm")[0])
    return ax


ALPHA = Panel("alpha", "Alpha: where steps land", ("Alpha",), 0, _alpha)
DISTANCES = Panel("distances", "Distances", ("Distance", "UpdateSize"), 0, _distances)
GRAD_NORM = Panel("grad_norm", "Gradient norm", ("GradNorm",), 0, _grad_norm)
