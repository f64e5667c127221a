"""Right column of Figure 2: curvature (HessMaxEV, HessTrace) and its interplay with noise (TIC)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec

from .data import RunData, format_step_axis, no_data, plot_series
from .panel import Panel

__all__ = ["HESS_MAX_EV", "HESS_TRACE", "MAX_PARAM_LINES", "TIC"]

#: at most this many per-parameter lines get their own legend entry
MAX_PARAM_LINES = 6


def _info_text(data: RunData, quantity: str) -> str | None:
    """``last 12.3 at step 40 (hvps 23, residual 0.001)`` for the latest finite reading."""
    rec = next((r for r in reversed(data.by_quantity.get(quantity, [])) if r.is_scalar and r.value == r.value), None)
    if rec is None:
        return None
    text = f"last {float(rec.value):.4g} at step {rec.step}"
    if rec.info:
        text += " (" + ", ".join(f"{k} {v:.3g}" for k, v in rec.info.items()) + ")"
    return text


def _hess_max_ev(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Largest Hessian eigenvalue over steps; the latest reading's diagnostics (info) as a note."""
    ax = fig.add_subplot(spec)
    ax.set_ylabel("λ_max(H_B)")
    if not plot_series(ax, data, "HessMaxEV", color="tab:purple"):
        no_data(ax, "HessMaxEV", data.reason("HessMaxEV"))
    else:
        ax.text(0.02, 0.97, _info_text(data, "HessMaxEV"), transform=ax.transAxes, va="top", fontsize=8)
    format_step_axis(ax, data.series("HessMaxEV")[0])
    return ax


def _hess_trace(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """Hessian trace over steps, network-wide and (thin) per parameter."""
    ax = fig.add_subplot(spec)
    ax.set_ylabel("Tr(H_B)")
    drawn = plot_series(ax, data, "HessTrace", label="network", color="tab:purple", zorder=3)
    per_param = data.param_series("HessTrace")
    for i, (name, (steps, values)) in enumerate(per_param.items()):
        label = name if len(per_param) <= MAX_PARAM_LINES else ("per parameter" if i == 0 else None)
        ax.plot(steps, values, linewidth=0.8, alpha=0.6, label=label, color=None if label != "per parameter" else "0.5")
    if drawn or per_param:
        ax.legend(fontsize=7, ncol=2)
    else:
        no_data(ax, "HessTrace", data.reason("HessTrace"))
    format_step_axis(ax, data.series("HessTrace")[0])
    return ax


def _tic(fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
    """The Takeuchi information criterion from the Hessian diagonal (TICDiag) and trace (TICTrace)."""
    ax = fig.add_subplot(spec)
    ax.set_ylabel("TIC")
    drawn = [
        plot_series(ax, data, "TICDiag", label="TICDiag (diagonal)", color="tab:brown"),
        plot_series(ax, data, "TICTrace", label="TICTrace (trace)", color="tab:olive"),
    ]
    if any(drawn):
        ax.legend(fontsize=8)
    else:
        no_data(ax, "TIC", data.reason("TICDiag") or data.reason("TICTrace"))
    format_step_axis(ax, np.concatenate([data.series("TICDiag")[0], data.series("TICTrace")[0]]))
    return ax


HESS_MAX_EV = Panel("hess_max_ev", "Max Hessian eigenvalue", ("HessMaxEV",), 2, _hess_max_ev)
HESS_TRACE = Panel("hess_trace", "Hessian trace", ("HessTrace",), 2, _hess_trace)
TIC = Panel("tic", "Takeuchi information criterion", ("TICDiag", "TICTrace"), 2, _tic)
