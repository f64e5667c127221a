"""Figure 2's layout: three instrument columns above a row of what practitioners track today.

Columns keep their meaning (left: step sizes, center: gradient distribution, right: curvature);
a panel whose quantities were not tracked is left out and the others in its column grow to fill
it, and a column with no panel is dropped, so a run with ``economy`` gets two full columns.
"""

from __future__ import annotations

from collections.abc import Iterable

from matplotlib.figure import Figure

from ..records import Record
from .curvature import HESS_MAX_EV, HESS_TRACE, TIC
from .data import RunData
from .gradients import GRAD_HIST_1D, GRAD_HIST_2D, GRADIENT_TESTS
from .panel import Panel
from .step_size import ALPHA, DISTANCES, GRAD_NORM
from .tracking import LOSS, TIME, other_panel

__all__ = ["FIGURE2_PANELS", "cockpit_view", "panels_for"]

#: Figure 2's instruments in reading order (row by row), then the bottom row
FIGURE2_PANELS: tuple[Panel, ...] = (
    ALPHA,
    GRADIENT_TESTS,
    HESS_MAX_EV,
    DISTANCES,
    GRAD_HIST_1D,
    HESS_TRACE,
    GRAD_NORM,
    GRAD_HIST_2D,
    TIC,
    LOSS,
    TIME,
)

COLUMN_WIDTH = 6.0  # inches, at 100 dpi a 600 px wide column
ROW_HEIGHT = 3.6
BOTTOM_HEIGHT = 3.0


def panels_for(data: RunData) -> tuple[list[list[Panel]], list[Panel]]:
    """The instrument columns (empty ones dropped) and the bottom row for a run's records.

    Scalar quantities that no Figure 2 panel shows (MeanGSNR, CABS, EarlyStopping, or a
    quantity this version does not know) get a line panel each in the bottom row.
    """
    columns = [[p for p in FIGURE2_PANELS if p.column == c and p.shown(data)] for c in range(3)]
    bottom = [p for p in FIGURE2_PANELS if p.column == 3 and p.shown(data)]
    covered = {q for p in FIGURE2_PANELS for q in p.quantities}
    for q in data.quantities:
        if q not in covered and any(r.is_scalar for r in data.by_quantity[q]):
            bottom.append(other_panel(q))
    return [c for c in columns if c], bottom


def cockpit_view(records: Iterable[Record], title: str | None = None) -> Figure:
    """The cockpit view of a run (the paper's Figure 2) from its records, as a matplotlib Figure.

    Built without pyplot (no display needed); save it with ``fig.savefig(path)`` or
    :func:`cockpit_log.render.figure_png`. Each panel's titled Axes is tagged, so
    :func:`cockpit_log.view.panel_titles` lists what the view shows.

    Raises:
        ValueError: there are no records.
    """
    data = RunData(records)
    if not data.records:
        raise ValueError("no cockpit records to plot")
    columns, bottom = panels_for(data)
    ncols = max(len(columns), min(len(bottom), 3), 1)
    rows_height = 3 * ROW_HEIGHT if columns else 0.0
    height = rows_height + (BOTTOM_HEIGHT if bottom else 0.0) + 0.6
    fig = Figure(figsize=(COLUMN_WIDTH * ncols, height), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.12, hspace=0.04, wspace=0.04)
    heights = [h for h in (rows_height, BOTTOM_HEIGHT if bottom else 0.0) if h]
    outer = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    if columns:
        top = outer[0, 0].subgridspec(1, len(columns))
        for i, column in enumerate(columns):
            cells = top[0, i].subgridspec(len(column), 1)
            for j, panel in enumerate(column):
                panel.render(fig, cells[j, 0], data)
    if bottom:
        ratios = [2.0 if p.key == "loss" else 1.0 for p in bottom]
        row = outer[len(heights) - 1, 0].subgridspec(1, len(bottom), width_ratios=ratios)
        for i, panel in enumerate(bottom):
            panel.render(fig, row[0, i], data)
    first = min(r.step for r in data.records)
    fig.suptitle(
        title or f"Cockpit view: steps {first} to {data.last_step}, {len(data.quantities)} quantities",
        fontsize=14,
        fontweight="bold",
    )
    return fig
