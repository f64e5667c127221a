"""The layer-wise histogram grid (the paper's Figure 4b) as a second figure."""

from __future__ import annotations

from collections.abc import Iterable

from matplotlib.figure import Figure

from ..records import Histogram1d, Histogram2d, Record
from ..render import layer_histograms_figure
from .data import RunData

__all__ = ["layer_view"]


#: quantities whose per-parameter values come in ``model.named_parameters()`` order
MODEL_ORDER_SOURCES = ("Distance", "GradNorm", "UpdateSize")


def _model_order(data: RunData, names: Iterable[str]) -> list[str]:
    """``names`` in model order (input side first, as in Figure 4b) where the run shows that order."""
    names = list(names)
    for q in MODEL_ORDER_SOURCES:
        rec = next((r for r in data.by_quantity.get(q, []) if r.per_param), None)
        if rec is not None:
            rank = {n: i for i, n in enumerate(rec.per_param)}
            return sorted(names, key=lambda n: rank.get(n, len(rank)))
    return names


def layer_view(records: Iterable[Record], max_cols: int = 4) -> Figure | None:
    """One gradient-element histogram per parameter at the latest step that has them, or None.

    Uses GradHist1d's per-parameter histograms; without them, the gradient marginals of
    GradHist2d's per-parameter histograms. Parameters are in model order (input side first)
    when the run also has per-parameter Distance, GradNorm or UpdateSize readings.
    """
    data = RunData(records)
    for quantity in ("GradHist1d", "GradHist2d"):
        rec = next((r for r in reversed(data.by_quantity.get(quantity, [])) if r.per_param), None)
        if rec is None:
            continue
        hists = {
            name: h.y_marginal() if isinstance(h, Histogram2d) else h
            for name in _model_order(data, rec.per_param)
            if isinstance(h := rec.per_param[name], (Histogram1d, Histogram2d))
        }
        if hists:
            title = f"Gradient elements per parameter ({quantity}, step {rec.step})"
            return layer_histograms_figure(hists, title=title, max_cols=max_cols)
    return None
