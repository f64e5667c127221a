"""A terminal table of a run's latest readings (``cockpit-log show``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .records import Histogram1d, Histogram2d, Record
from .summary import run_summary

__all__ = ["describe_value", "latest_table"]


def describe_value(record: Record) -> tuple[str, str]:
    """``(value, detail)`` texts of one reading: the number, or a histogram's size and clipping."""
    v = record.value
    if isinstance(v, Histogram2d):
        clipped = v.x_below + v.x_above + v.y_below + v.y_above
        shape = f"{v.counts.shape[0]}x{v.counts.shape[1]} bins"
        return f"{v.total:,} pairs", f"{shape}, {clipped:,} clipped to edge bins, {v.nonfinite:,} NaN"
    if isinstance(v, Histogram1d):
        outside = (v.below + v.above) / v.total if v.total else 0.0
        detail = f"{outside:.1%} outside [{v.edges[0]:g}, {v.edges[-1]:g}]"
        if v.nonfinite:
            detail += f", {v.nonfinite:,} NaN"
        return f"{v.total:,} values", detail
    x = float(v)
    detail = ", ".join(f"{k} {val:.4g}" for k, val in record.info.items())
    if math.isnan(x) and record.reason:
        detail = record.reason + (f"; {detail}" if detail else "")
    if record.per_param:
        detail = (detail + "; " if detail else "") + f"{len(record.per_param)} parameters"
    return f"{x:.6g}", detail


def latest_table(records: Iterable[Record], max_detail: int = 70) -> str:
    """The latest reading of every quantity (in first-seen order), then the run's alpha medians."""
    records = list(records)
    latest: dict[str, Record] = {}
    count: dict[str, int] = {}
    for r in records:
        count[r.quantity] = count.get(r.quantity, 0) + 1
        if r.quantity not in latest or r.step >= latest[r.quantity].step:
            latest[r.quantity] = r
    rows = [("quantity", "readings", "last step", "last value", "detail")]
    for q, r in latest.items():
        value, detail = describe_value(r)
        if len(detail) > max_detail:
            detail = detail[: max_detail - 3] + "..."
        rows.append((q, str(count[q]), str(r.step), value, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3].rjust(widths[3])]
        lines.append("  ".join(cells) + "  " + row[4])
        if i == 0:
            lines.append("-" * len(lines[0].rstrip()))
    summary = run_summary(records)
    if summary.get("alpha_count"):
        lines.append("")
        lines.append(
            f"alpha median: {summary['alpha_median']:.3g} over the whole run, "
            f"{summary['alpha_median_last10']:.3g} over the last 10 % ({int(summary['alpha_count'])} readings)"
        )
    return "\n".join(line.rstrip() for line in lines)
