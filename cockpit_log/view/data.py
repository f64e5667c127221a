"""A run's records arranged for plotting: series per quantity, latest readings, the step axis."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes

from ..records import Record

__all__ = ["RunData", "format_step_axis", "is_log_spaced", "no_data", "plot_series"]


class RunData:
    """Records grouped by quantity and sorted by step, with the lookups the panels need."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: list[Record] = list(records)
        grouped: dict[str, list[Record]] = defaultdict(list)
        for r in self.records:
            grouped[r.quantity].append(r)
        self.by_quantity: dict[str, list[Record]] = {q: sorted(rs, key=lambda r: r.step) for q, rs in grouped.items()}
        self.last_step: int = max((r.step for r in self.records), default=0)

    @property
    def quantities(self) -> list[str]:
        """Names of the quantities with at least one record, in first-seen order."""
        return list(self.by_quantity)

    def has(self, *quantities: str) -> bool:
        """Whether any of ``quantities`` has a record."""
        return any(q in self.by_quantity for q in quantities)

    def series(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of the finite scalar readings of ``quantity``."""
        pairs = [
            (r.step, float(r.value))
            for r in self.by_quantity.get(quantity, [])
            if r.is_scalar and math.isfinite(float(r.value))
        ]
        if not pairs:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        steps, values = zip(*pairs)
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def param_series(self, quantity: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-parameter steps and finite scalar values of ``quantity``, keyed by parameter name."""
        out: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in self.by_quantity.get(quantity, []):
            for name, v in r.per_param.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    out[name].append((r.step, float(v)))
        return {n: (np.asarray([s for s, _ in p]), np.asarray([v for _, v in p])) for n, p in out.items()}

    def latest(self, quantity: str, kind: type | tuple[type, ...] | None = None) -> Record | None:
        """The reading of ``quantity`` with the highest step (of value type ``kind`` if given)."""
        for r in reversed(self.by_quantity.get(quantity, [])):
            if kind is None or isinstance(r.value, kind):
                return r
        return None

    def reason(self, quantity: str) -> str | None:
        """The most frequent reason given for NaN readings of ``quantity``, if any."""
        reasons = Counter(r.reason for r in self.by_quantity.get(quantity, []) if r.reason)
        return reasons.most_common(1)[0][0] if reasons else None


def is_log_spaced(steps: Sequence[int] | np.ndarray) -> bool:
    """Whether tracked ``steps`` come from a log-spaced schedule (gaps grow along the run).

    The median gap between consecutive tracked steps in the later half of the readings is
    compared with the one in the earlier half; a ratio of 3 or more means log spacing
    (``every(k)`` gives 1, ``log_spaced(10_000)`` gives far more).
    """
    s = np.unique(np.asarray(steps, dtype=np.int64))
    if len(s) < 6:
        return False
    gaps = np.diff(s)
    half = len(gaps) // 2
    return float(np.median(gaps[half:])) >= 3.0 * float(np.median(gaps[:half]))


def format_step_axis(ax: Axes, steps: Sequence[int] | np.ndarray) -> None:
    """Label the x-axis as the optimizer step; symmetric-log scale when the steps are log-spaced."""
    if len(steps) and is_log_spaced(steps):
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(-0.5, float(np.max(steps)) * 1.3)
        ax.set_xlabel("step (log scale)")
    else:
        ax.set_xlabel("step")


def no_data(ax: Axes, what: str, reason: str | None = None) -> None:
    """Say in the panel that ``what`` has no finite readings (and why, when a reason was recorded)."""
    text = f"no finite {what} readings"
    if reason:
        text += f":\n{reason}"
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, wrap=True, color="0.3")


def plot_series(ax: Axes, data: RunData, quantity: str, label: str | None = None, **style: object) -> bool:
    """Line of ``quantity``'s finite readings over steps (with markers when sparse); False if none."""
    steps, values = data.series(quantity)
    if len(steps) == 0:
        return False
    marker = "o" if len(steps) <= 40 else None
    ax.plot(steps, values, marker=marker, markersize=3, linewidth=1.4, label=label or quantity, **style)
    return True
