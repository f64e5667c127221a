"""Records -> W&B history rows: the key scheme of the W&B sink, in one place.

One ``run.log`` row per tracked step (per ``write`` call and step), never with W&B's ``step=``:

============================================  ==================================================
key                                           value
============================================  ==================================================
``cockpit/step``                              the record's step (the x-axis of every key below)
``cockpit/<quantity>``                        scalar; ``wandb.Histogram`` for Histogram1d;
                                              ``wandb.Image`` (heatmap with marginals) for Histogram2d
``cockpit/<quantity>/<param>``                the same per parameter (no images per parameter)
``cockpit_tables/<quantity>[/<param>]``       Histogram2d as a table: non-zero cells
                                              (``x_bin, y_bin, x_lo, x_hi, y_lo, y_hi, count``)
``cockpit_info/<quantity>/<name>``            the record's ``info`` diagnostics (e.g. ``hvps``)
``cockpit_meta/<quantity>``                   JSON text with what the panels do not carry: the NaN
                                              ``reason``, clipped/NaN counts of histograms, the
                                              edges of 2-D histograms; absent when empty
============================================  ==================================================

``<quantity>`` is :func:`cockpit_log.naming.quantity_key` (``grad_norm``); W&B groups each prefix
in its own panel section. :mod:`cockpit_log.backends._wandb_read` inverts this mapping.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..naming import PREFIX, metric_key, quantity_key
from ..records import Histogram1d, Histogram2d, Record
from ..render import figure_png, histogram2d_figure

__all__ = [
    "INFO_PREFIX",
    "MAX_BINS",
    "META_PREFIX",
    "STEP_KEY",
    "TABLE_COLUMNS",
    "TABLE_PREFIX",
    "coarsen",
    "group_by_step",
    "image_from",
    "step_row",
]

STEP_KEY = f"{PREFIX}/step"
INFO_PREFIX = f"{PREFIX}_info"
META_PREFIX = f"{PREFIX}_meta"
TABLE_PREFIX = f"{PREFIX}_tables"
#: ``wandb.Histogram`` takes at most this many bins.
MAX_BINS = 512
TABLE_COLUMNS = ["x_bin", "y_bin", "x_lo", "x_hi", "y_lo", "y_hi", "count"]


def group_by_step(records: Iterable[Record]) -> list[tuple[int, list[Record]]]:
    """Records grouped by step, groups in order of first appearance."""
    groups: dict[int, list[Record]] = {}
    for r in records:
        groups.setdefault(r.step, []).append(r)
    return list(groups.items())


def coarsen(h: Histogram1d, max_bins: int = MAX_BINS) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of ``h`` with adjacent bins summed so that at most ``max_bins`` remain.

    The coarse edges are a subset of the original ones, so every count is exact for its wider bin.
    """
    n = len(h.counts)
    if n <= max_bins:
        return np.asarray(h.counts), np.asarray(h.edges)
    k = math.ceil(n / max_bins)
    starts = np.arange(0, n, k)
    counts = np.add.reduceat(np.asarray(h.counts), starts)
    edges = np.append(np.asarray(h.edges)[starts], h.edges[-1])
    return counts, edges


def _floats(a: np.ndarray) -> list[float]:
    return [float(x) for x in a]


def _hist1d_meta(h: Histogram1d) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in (("below", h.below), ("above", h.above), ("nonfinite", h.nonfinite)) if v}
    if len(h.counts) > MAX_BINS:
        out["counts"] = [int(c) for c in h.counts]
        out["edges"] = _floats(h.edges)
    return out


def _hist2d_meta(h: Histogram2d) -> dict[str, Any]:
    out: dict[str, Any] = {"x_edges": _floats(h.x_edges), "y_edges": _floats(h.y_edges)}
    for k in ("x_below", "x_above", "y_below", "y_above", "nonfinite"):
        if getattr(h, k):
            out[k] = int(getattr(h, k))
    return out


def _hist2d_table(h: Histogram2d) -> Any:
    import wandb

    xi, yi = np.nonzero(h.counts)
    data = [
        [int(i), int(k), float(h.x_edges[i]), float(h.x_edges[i + 1]), float(h.y_edges[k]), float(h.y_edges[k + 1])]
        + [int(h.counts[i, k])]
        for i, k in zip(xi, yi)
    ]
    return wandb.Table(columns=TABLE_COLUMNS, data=data)


def image_from(picture: Any) -> Any:
    """A ``wandb.Image`` from PNG bytes or a matplotlib ``Figure``."""
    import wandb
    from PIL import Image

    png = picture if isinstance(picture, (bytes, bytearray)) else figure_png(picture)
    return wandb.Image(Image.open(io.BytesIO(png)))


def _histogram(h: Histogram1d) -> Any:
    import wandb

    counts, edges = coarsen(h)
    return wandb.Histogram(np_histogram=(counts, edges))


def step_row(
    records: Sequence[Record],
    *,
    per_param_histograms: bool = True,
    hist2d_images: bool = True,
    hist2d_tables: bool = True,
) -> dict[str, Any]:
    """The ``run.log`` row of one step's records (without ``cockpit/step``); see the module docstring."""
    row: dict[str, Any] = {}
    for r in records:
        qk = quantity_key(r.quantity)
        meta: dict[str, Any] = {}
        hist_meta: dict[str, Any] = {}
        if r.reason is not None:
            meta["reason"] = r.reason
        values: list[tuple[str | None, Any]] = [(None, r.value)]
        values += [(p, v) for p, v in r.per_param.items()]
        for param, v in values:
            k = metric_key(r.quantity, param)
            if isinstance(v, Histogram2d):
                if param is None and hist2d_images:
                    row[k] = image_from(histogram2d_figure(v, title=f"{r.quantity}, step {r.step}"))
                if hist2d_tables:
                    row[f"{TABLE_PREFIX}/{qk}" + (f"/{param}" if param is not None else "")] = _hist2d_table(v)
                    hist_meta[param or ""] = _hist2d_meta(v)
            elif isinstance(v, Histogram1d):
                if param is None or per_param_histograms:
                    row[k] = _histogram(v)
                    m = _hist1d_meta(v)
                    if m:
                        hist_meta[param or ""] = m
            else:
                row[k] = float(v)
        for name, x in r.info.items():
            row[f"{INFO_PREFIX}/{qk}/{name}"] = float(x)
        if hist_meta:
            meta["hist"] = hist_meta
        if meta:
            row[f"{META_PREFIX}/{qk}"] = json.dumps(meta, separators=(",", ":"))
    return row
