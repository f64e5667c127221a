"""Histogram pictures for trackers and the view: 1-D, layer-wise grid, 2-D heatmap with marginals.

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` built without pyplot's
global state (safe from a background thread, no display needed); :func:`figure_png` turns it into
PNG bytes. :func:`draw_histogram1d` and :func:`draw_histogram2d` draw onto a given Axes or grid
cell, for composite figures such as the cockpit view. Bars are drawn on the histogram's own bins,
so the picture shows exactly the counts recorded, including the values clipped into the edge bins
(said in the title when there are any).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure, SubFigure
from matplotlib.gridspec import SubplotSpec

from .records import Histogram1d, Histogram2d

__all__ = [
    "clip_note",
    "draw_histogram1d",
    "Histogram2dAxes",
    "draw_histogram2d",
    "figure_png",
    "histogram1d_figure",
    "histogram2d_figure",
    "layer_histograms_figure",
]


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def clip_note(h: Histogram1d) -> str:
    """`` (N clipped to edge bins, M NaN)`` for a histogram with such values, else ``""``."""
    parts = []
    if h.below or h.above:
        parts.append(f"{h.below + h.above} clipped to edge bins")
    if h.nonfinite:
        parts.append(f"{h.nonfinite} NaN")
    return f" ({', '.join(parts)})" if parts else ""


def draw_histogram1d(
    ax: Axes, h: Histogram1d, log: bool = True, color: str = "tab:blue", clipped_color: str | None = None
) -> None:
    """Bars of ``h`` on its own bins onto ``ax`` (log count axis when ``log`` and any count > 0).

    With ``clipped_color``, an edge bin that holds clipped values is drawn in that colour, so
    values outside the recorded range stand out.
    """
    widths = np.diff(h.edges)
    counts = h.counts.astype(float)
    colors = [color] * len(counts)
    if clipped_color is not None and len(counts):
        if h.below:
            colors[0] = clipped_color
        if h.above:
            colors[-1] = clipped_color
    ax.bar(h.edges[:-1], counts, width=widths, align="edge", color=colors, linewidth=0)
    if log and counts.max(initial=0) > 0:
        ax.set_yscale("log")
    ax.set_xlim(h.edges[0], h.edges[-1])


def histogram1d_figure(h: Histogram1d, title: str = "Gradient elements", xlabel: str = "g_n(θ)_j") -> Figure:
    """Bar plot of a 1-D histogram (log count axis)."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    draw_histogram1d(ax, h)
    ax.set_title(title + clip_note(h), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return fig


def layer_histograms_figure(
    per_param: Mapping[str, Histogram1d], title: str = "Gradient elements per parameter", max_cols: int = 4
) -> Figure:
    """One small 1-D histogram per parameter, in a grid (the layer-wise view of Figure 4b)."""
    names = list(per_param)
    n = max(len(names), 1)
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.0 * cols, 2.2 * rows + 0.4), layout="constrained")
    fig.suptitle(title)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        draw_histogram1d(ax, per_param[name])
        ax.set_title(name + clip_note(per_param[name]), fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


class Histogram2dAxes(NamedTuple):
    """The Axes :func:`draw_histogram2d` creates: the heatmap and its two marginals."""

    heatmap: Axes
    top: Axes
    side: Axes


def draw_histogram2d(fig: Figure | SubFigure, spec: SubplotSpec, h: Histogram2d, title: str = "") -> Histogram2dAxes:
    """Heatmap of ``h`` (log colour scale) with its two marginals, drawn into the grid cell ``spec``.

    ``x`` (parameter values ``θ_j``) runs along the horizontal axis, ``y`` (gradient elements
    ``g_n(θ)_j``) along the vertical one, as in the paper's Figure 2. A non-empty ``title`` (plus
    a note on clipped values) goes above the top marginal.
    """
    grid = spec.subgridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    side = fig.add_subplot(grid[1, 1], sharey=ax)
    counts = h.counts.astype(float).T  # rows: y bins, columns: x bins
    masked = np.ma.masked_where(counts <= 0, counts)
    norm = LogNorm(vmin=1, vmax=max(float(counts.max(initial=1)), 1.0 + 1e-9))
    mesh = ax.pcolormesh(h.x_edges, h.y_edges, masked, norm=norm, cmap="viridis")
    fig.colorbar(mesh, ax=side, label="count", fraction=0.5)
    ax.set_xlabel("parameter θ_j")
    ax.set_ylabel("gradient element g_n(θ)_j")
    xm, ym = h.x_marginal(), h.y_marginal()
    top.bar(xm.edges[:-1], xm.counts, width=np.diff(xm.edges), align="edge", linewidth=0)
    side.barh(ym.edges[:-1], ym.counts, height=np.diff(ym.edges), align="edge", linewidth=0)
    top.tick_params(labelbottom=False, labelsize=7)
    side.tick_params(labelleft=False, labelsize=7)
    clipped = h.x_below + h.x_above + h.y_below + h.y_above
    note = f" ({clipped} clipped to edge bins)" if clipped else ""
    if title:
        top.set_title(title + note, fontsize=10)
    return Histogram2dAxes(ax, top, side)


def histogram2d_figure(h: Histogram2d, title: str = "Parameters and gradient elements") -> Figure:
    """Heatmap of a 2-D histogram (log colour scale) with its two marginals beside it.

    ``x`` (parameter values ``θ_j``) runs along the horizontal axis, ``y`` (gradient elements
    ``g_n(θ)_j``) along the vertical one, as in the paper's Figure 2.
    """
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    draw_histogram2d(fig, fig.add_gridspec(1, 1)[0, 0], h, title)
    return fig
