"""Bottom row: what practitioners track today (loss, wall-clock time, in gray) and further instruments."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec

from .data import RunData, format_step_axis, no_data, plot_series
from .panel import PRACTITIONER_GRAY, Panel

__all__ = ["LOSS", "OTHER_TITLES", "TIME", "other_panel"]

#: titles and y-labels of scalar instruments outside Figure 2's grid
OTHER_TITLES: dict[str, tuple[str, str]] = {
    "MeanGSNR": ("Mean gradient SNR", "mean GSNR"),
    "CABS": ("CABS batch size", "suggested batch size"),
    "EarlyStopping": ("Early-stopping criterion", "criterion (> 0: stop)"),
}


def _loss(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Mini-batch loss over steps, with a running mean when there are many readings."""
    ax = fig.add_subplot(spec)
    ax.set_facecolor(PRACTITIONER_GRAY)
    steps, values = data.series("Loss")
    if plot_series(ax, data, "Loss", label="mini-batch loss", color="0.35", alpha=0.7):
        window = max(1, len(values) // 20)
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, color="black", linewidth=1.8, label=f"running mean ({window})")
        ax.legend(fontsize=8)
    else:
        no_data(ax, "Loss", data.reason("Loss"))
    ax.set_ylabel("loss L_B(θ_t)")
    format_step_axis(ax, steps)
    return ax


def _time(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Wall-clock seconds since attach over steps."""
    ax = fig.add_subplot(spec)
    ax.set_facecolor(PRACTITIONER_GRAY)
    if not plot_series(ax, data, "Time", color="0.35"):
        no_data(ax, "Time")
    ax.set_ylabel("seconds since attach")
    format_step_axis(ax, data.series("Time")[0])
    return ax


def other_panel(quantity: str) -> Panel:
    """A line panel for a scalar quantity outside Figure 2's grid (MeanGSNR, CABS, or any other name)."""
    title, ylabel = OTHER_TITLES.get(quantity, (quantity, quantity))

    def draw(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
        ax = fig.add_subplot(spec)
        if not plot_series(ax, data, quantity, color="tab:cyan"):
            no_data(ax, quantity, data.reason(quantity))
        ax.set_ylabel(ylabel)
        format_step_axis(ax, data.series(quantity)[0])
        return ax

    return Panel(f"other:{quantity}", title, (quantity,), 3, draw)


LOSS = Panel("loss", "Mini-batch loss", ("Loss",), 3, _loss)
TIME = Panel("time", "Wall-clock time", ("Time",), 3, _time)
