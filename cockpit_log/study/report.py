"""The study report: Figure 5's plot, a Markdown page and a JSON summary of the reading.

:func:`study_figure` draws the final metric against the median alpha of each run (the paper's
Figure 5), marker size by learning rate, the best run marked by a vertical line; :func:`write_study`
writes ``study.png``, ``study.md`` (plot, reading, a YAML snippet for the next sweep, the table
of runs sorted by the metric) and ``study.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from matplotlib.figure import Figure

from .analysis import StudyReading
from .trackers import json_safe

__all__ = ["study_figure", "study_markdown", "write_study"]

BEST_COLOR = "tab:red"
RUN_COLOR = "tab:blue"


def _sizes(lrs: list[float]) -> list[float]:
    """Marker areas growing with log(lr), from 30 to 300 (all 90 without learning rates)."""
    logs = [math.log10(x) if math.isfinite(x) and x > 0 else math.nan for x in lrs]
    finite = [v for v in logs if math.isfinite(v)]
    if not finite or max(finite) == min(finite):
        return [90.0] * len(lrs)
    lo, hi = min(finite), max(finite)
    return [30.0 + 270.0 * (v - lo) / (hi - lo) if math.isfinite(v) else 90.0 for v in logs]


def study_figure(reading: StudyReading, title: str | None = None) -> Figure:
    """Final metric against median alpha (whole run), marker size by learning rate, best run marked."""
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    metric = reading.metric.name or "metric"
    shown = [r for r in reading.ranked if math.isfinite(r.alpha_median) and math.isfinite(reading.metric_value(r))]
    lrs = [r.param(reading.lr_key) for r in shown]
    sizes = _sizes(lrs)
    xs = [r.alpha_median for r in shown]
    ys = [reading.metric_value(r) for r in shown]
    colors = [BEST_COLOR if r is reading.best else RUN_COLOR for r in shown]
    ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1)
    ax.axvline(1.0, color="0.8", linestyle=":", linewidth=1)
    if shown:
        ax.scatter(xs, ys, s=sizes, c=colors, alpha=0.75, edgecolors="black", linewidths=0.5, zorder=3)
        for r, x, y, lr in zip(shown, xs, ys, lrs):
            label = f"{lr:.3g}" if math.isfinite(lr) else r.name
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7, color="0.25")
        if min(ys) > 0 and max(ys) / min(ys) > 100:
            ax.set_yscale("log")
    if reading.best is not None and math.isfinite(reading.best.alpha_median):
        ax.axvline(reading.best.alpha_median, color=BEST_COLOR, linewidth=1.5, label="best run")
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, -0.25), max(hi, 1.15))
    ymax = ax.get_ylim()[1]
    ax.text(0.0, ymax, " valley floor (α = 0)", fontsize=7, color="0.4", va="top", ha="left")
    ax.text(1.0, ymax, " mirrored point (α = 1)", fontsize=7, color="0.5", va="top", ha="left")
    finite_lrs = [x for x in lrs if math.isfinite(x) and x > 0]
    if reading.lr_key and finite_lrs:
        ordered = sorted(set(finite_lrs))
        picks = sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})
        all_sizes = _sizes([*lrs, *picks])[len(lrs) :]
        for lr, s in zip(picks, all_sizes):
            ax.scatter([], [], s=s, c="white", edgecolors="black", linewidths=0.5, label=f"{reading.lr_key} {lr:.3g}")
    ax.legend(fontsize=7, loc="best", frameon=False, labelspacing=1.2)
    ax.set_xlabel("median α over the whole run")
    ax.set_ylabel(f"{metric} ({reading.metric.goal})")
    ax.set_title(title or f"{metric} against median α (the paper's Figure 5)", fontsize=10)
    ax.grid(alpha=0.3)
    left_out = [r.name for r in reading.ranked if r not in shown]
    if left_out:
        more = f" and {len(left_out) - 6} more" if len(left_out) > 6 else ""
        fig.text(0.01, 0.0, f"not shown (no finite α or {metric}): {', '.join(left_out[:6])}{more}", fontsize=7)
    return fig


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v).replace("|", "\\|")


def study_markdown(reading: StudyReading, image: str | None = "study.png", title: str = "Learning-rate study") -> str:
    """The report as Markdown: the plot, the reading, the next sweep's range, the table of runs."""
    lines = [f"# {title}", ""]
    if image:
        lines += [f"![{reading.metric.name} against median alpha]({image})", ""]
    lines += [f"**{reading.headline()}**", "", "## Reading", ""]
    for p in reading.paragraphs():
        lines += [p, ""]
    if reading.next is not None and reading.lr_key:
        lines += ["## Next sweep", "", "```yaml", "parameters:"]
        lines += _yaml_param(reading.lr_key, reading.next.low, reading.next.high)
        lines += ["```", ""]
    columns, rows = reading.table()
    lines += [f"## Runs, best first by {reading.metric.name} ({reading.metric.goal})", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _yaml_param(key: str, low: float, high: float) -> list[str]:
    parts = key.split(".")
    out: list[str] = []
    for depth, part in enumerate(parts[:-1]):
        out += [f"{'  ' * (depth + 1)}{part}:", f"{'  ' * (depth + 2)}parameters:"]
    indent = "  " * (2 * (len(parts) - 1) + 1)
    out += [
        f"{indent}{parts[-1]}:",
        f"{indent}  distribution: log_uniform_values",
        f"{indent}  min: {low:.3g}",
        f"{indent}  max: {high:.3g}",
    ]
    return out


def reading_dict(reading: StudyReading) -> dict[str, object]:
    """The reading as plain data (``study.json``)."""
    columns, rows = reading.table()
    return json_safe(
        {
            "metric": {"name": reading.metric.name, "goal": reading.metric.goal},
            "best_run": reading.best.name if reading.best else None,
            "best_source": reading.best.source if reading.best else None,
            "lr_key": reading.lr_key,
            "next_range": list(reading.next_range) if reading.next_range else None,
            "next_reason": reading.next.reason if reading.next else None,
            "covers_alpha_below_0": reading.covers_negative,
            "covers_alpha_above_0": reading.covers_positive,
            "reading": reading.paragraphs(),
            "columns": columns,
            "rows": rows,
        }
    )


def write_study(
    reading: StudyReading, out_dir: str | os.PathLike[str], title: str = "Learning-rate study", dpi: int = 110
) -> list[Path]:
    """Write ``study.png``, ``study.md`` and ``study.json`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, md, js = out / "study.png", out / "study.md", out / "study.json"
    study_figure(reading, title=None).savefig(png, dpi=dpi)
    md.write_text(study_markdown(reading, png.name, title), encoding="utf-8")
    js.write_text(json.dumps(reading_dict(reading), indent=2, default=str), encoding="utf-8")
    return [png, md, js]
