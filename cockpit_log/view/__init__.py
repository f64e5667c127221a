"""The cockpit view: the paper's Figure 2 and the layer-wise histogram grid, from records of any source.

>>> fig = cockpit_view(cockpit_log.read("cockpit-runs/run-..."))  # doctest: +SKIP
>>> fig.savefig("cockpit-view.png")  # doctest: +SKIP

:func:`write_view` writes both figures as PNG files; the ``cockpit-log plot`` command calls it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from ..records import Record
from .layers import layer_view
from .layout import FIGURE2_PANELS, cockpit_view
from .panel import GID_PREFIX, Panel

__all__ = [
    "FIGURE2_PANELS",
    "Panel",
    "ViewFiles",
    "cockpit_view",
    "layer_view",
    "layers_path_for",
    "panel_titles",
    "write_view",
]


def panel_titles(fig: Figure) -> dict[str, str]:
    """Panel key -> title of every panel in a figure made by :func:`cockpit_view`, in drawing order."""
    out: dict[str, str] = {}
    for ax in fig.axes:
        gid = ax.get_gid()
        if gid and gid.startswith(GID_PREFIX):
            out[gid.removeprefix(GID_PREFIX)] = ax.get_title()
    return out


def layers_path_for(path: str | os.PathLike[str]) -> Path:
    """Where the layer-wise grid goes beside the view: ``view.png`` -> ``view-layers.png``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-layers{p.suffix or '.png'}")


@dataclass(frozen=True)
class ViewFiles:
    """What :func:`write_view` wrote: the files (view first, then the layer-wise grid if any) and
    the view's panels (key -> title, as :func:`panel_titles` gives them)."""

    files: list[Path]
    panels: dict[str, str]


def write_view(
    records: Iterable[Record],
    path: str | os.PathLike[str],
    layers_path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> ViewFiles:
    """Write the cockpit view to ``path`` and, when the run has per-parameter histograms, the
    layer-wise grid to ``layers_path`` (default: :func:`layers_path_for`).

    Raises:
        ValueError: there are no records.
    """
    records = list(records)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = cockpit_view(records, title=title)
    fig.savefig(out, dpi=dpi)
    written = [out]
    grid = layer_view(records)
    if grid is not None:
        lp = Path(layers_path) if layers_path is not None else layers_path_for(out)
        lp.parent.mkdir(parents=True, exist_ok=True)
        grid.savefig(lp, dpi=dpi)
        written.append(lp)
    return ViewFiles(written, panel_titles(fig))
