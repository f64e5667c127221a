"""What a panel of the cockpit view is: a titled instrument drawn into one grid cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec

from .data import RunData

__all__ = ["GID_PREFIX", "PRACTITIONER_GRAY", "Panel", "host_axes", "mark_panel"]

#: prefix of the ``gid`` that marks the Axes carrying a panel's title
GID_PREFIX = "cockpit-panel:"

#: background of the panels showing what practitioners track today (the paper's gray row)
PRACTITIONER_GRAY = "#ececec"

DrawFn = Callable[[Figure, SubplotSpec, RunData], Axes]


@dataclass(frozen=True)
class Panel:
    """One instrument of the view.

    Attributes:
        key: stable identifier (``"alpha"``, ``"gradient_tests"``, ...).
        title: the title shown above the panel.
        quantities: the panel is shown when any of these has a record.
        column: 0 (left), 1 (center), 2 (right) as in Figure 2, or 3 for the bottom row.
        draw: draws the panel into a grid cell and returns the Axes that carries the title.
    """

    key: str
    title: str
    quantities: tuple[str, ...]
    column: int
    draw: DrawFn

    def shown(self, data: RunData) -> bool:
        """Whether the run tracked any of this panel's quantities."""
        return data.has(*self.quantities)

    def render(self, fig: Figure, spec: SubplotSpec, data: RunData) -> Axes:
        """Draw the panel, set its title and mark its Axes (see :func:`mark_panel`)."""
        ax = self.draw(fig, spec, data)
        ax.set_title(self.title, fontsize=11, fontweight="bold")
        mark_panel(ax, self.key)
        return ax


def mark_panel(ax: Axes, key: str) -> None:
    """Tag ``ax`` as the titled Axes of panel ``key`` (read back by :func:`cockpit_log.view.panel_titles`)."""
    ax.set_gid(GID_PREFIX + key)


def host_axes(fig: Figure, spec: SubplotSpec) -> tuple[Axes, SubplotSpec]:
    """For a panel made of several Axes: an invisible, flat Axes on top of the cell ``spec`` that
    carries the panel's title, and the rest of the cell for the panel's Axes.

    Constrained layout reserves room for the host's title, so it never sits under the content.
    """
    grid = spec.subgridspec(2, 1, height_ratios=(0.001, 1.0), hspace=0.0)
    ax = fig.add_subplot(grid[0, 0])
    ax.set_axis_off()
    return ax, grid[1, 0]
