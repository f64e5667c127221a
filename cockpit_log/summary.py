"""Run-level numbers for comparing runs: alpha medians and the last value of each scalar quantity.

Section 3.3 of the paper reads a run by its median alpha, over the whole run and over the last
10 % of training (Figure 1's two distributions, Figure 5's x-axis). Trackers cannot compute a
median themselves, so every sink stores :func:`run_summary` at close.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .naming import quantity_key
from .records import Record

__all__ = ["alpha_values", "last_fraction", "run_summary"]


def alpha_values(records: Iterable[Record]) -> list[tuple[int, float]]:
    """``(step, alpha)`` of every finite Alpha reading, in step order."""
    out = [(r.step, float(r.value)) for r in records if r.quantity == "Alpha" and r.is_scalar]
    return sorted((s, a) for s, a in out if math.isfinite(a))


def last_fraction(steps_values: list[tuple[int, float]], fraction: float, last_step: int) -> list[float]:
    """Values whose step lies in the last ``fraction`` of the run ``[0, last_step]``.

    The window is ``step >= (1 - fraction) * last_step`` (by steps, not by readings, so a
    log-spaced schedule does not shift it).
    """
    start = (1.0 - fraction) * last_step
    return [v for s, v in steps_values if s >= start]


def run_summary(records: Iterable[Record], fraction: float = 0.1) -> dict[str, float]:
    """Summary numbers of a run, keyed in snake case.

    - ``alpha_median``: median of the finite Alpha readings over the whole run (NaN if none);
    - ``alpha_median_last10``: the same over the last ``fraction`` (10 %) of the run's steps;
    - ``alpha_count``: the number of finite Alpha readings;
    - ``<quantity>_last``: the last finite value of each scalar quantity (e.g. ``loss_last``);
    - ``steps``: the last step with a record, plus one.
    """
    records = list(records)
    out: dict[str, float] = {}
    if not records:
        return out
    last_step = max(r.step for r in records)
    alphas = alpha_values(records)
    values = [a for _, a in alphas]
    out["alpha_median"] = float(np.median(values)) if values else math.nan
    late = last_fraction(alphas, fraction, last_step)
    out["alpha_median_last10"] = float(np.median(late)) if late else math.nan
    out["alpha_count"] = float(len(values))
    last: dict[str, tuple[int, float]] = {}
    for r in records:
        if r.is_scalar and math.isfinite(float(r.value)):
            prev = last.get(r.quantity)
            if prev is None or r.step >= prev[0]:
                last[r.quantity] = (r.step, float(r.value))
    for q, (_, v) in sorted(last.items()):
        out[f"{quantity_key(q)}_last"] = v
    out["steps"] = float(last_step + 1)
    return out
