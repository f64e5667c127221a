"""Custom charts of the W&B sink: the alpha distribution (Figure 1) and the gradient-tests gauge (Figure 9b).

Each chart is a ``wandb.Table`` drawn by a Vega-Lite spec shipped in ``cockpit_log/backends/vega/``.
W&B draws a custom chart from a preset stored in an entity, so the specs are created there once with
``cockpit-log-wandb charts --entity <entity>`` (online only; :func:`create_chart_presets`), and runs
refer to them as ``<entity>/cockpit-alpha-distribution`` and ``<entity>/cockpit-gradient-tests``.
Offline runs record the tables and these chart references; the panels appear after ``wandb sync``.
Built-in presets are logged beside them where they serve as well (``wandb.plot.histogram`` of the
whole run's alpha, ``wandb.plot.line_series`` of the three tests over steps).

:class:`Tally` keeps the little the charts and the run summary need (alpha readings, the three test
values per step, the last finite value of each scalar quantity), not the records themselves.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from importlib import resources
from typing import Any

from ..records import Record
from ..summary import last_fraction, run_summary

__all__ = [
    "ALPHA_SPEC",
    "CHART_PREFIX",
    "GAUGE_SPEC",
    "MAX_TABLE_ROWS",
    "SPECS",
    "Tally",
    "chart_row",
    "create_chart_presets",
    "load_spec",
]

CHART_PREFIX = "cockpit_charts"
ALPHA_SPEC = "cockpit-alpha-distribution"
GAUGE_SPEC = "cockpit-gradient-tests"
#: preset name -> (spec file, display name)
SPECS = {
    ALPHA_SPEC: ("alpha_distribution.json", "Cockpit: alpha distribution"),
    GAUGE_SPEC: ("gradient_tests.json", "Cockpit: gradient tests"),
}
#: W&B keeps at most this many rows of a table in the run's files; larger tables are thinned evenly.
MAX_TABLE_ROWS = 10_000
_TESTS = {"NormTest": "norm", "InnerTest": "inner", "OrthoTest": "ortho"}


def load_spec(name: str) -> dict[str, Any]:
    """The Vega-Lite spec of preset ``name`` (:data:`ALPHA_SPEC` or :data:`GAUGE_SPEC`), as shipped."""
    filename, _ = SPECS[name]
    return json.loads(resources.files(__package__).joinpath("vega", filename).read_text(encoding="utf-8"))


def create_chart_presets(entity: str, access: str = "private", api: Any = None) -> list[str]:
    """Create (or update) the cockpit chart presets in ``entity``; returns their ids. Needs W&B online."""
    import wandb

    api = api or wandb.Api()
    return [
        api.create_custom_chart(
            entity=entity,
            name=name,
            display_name=display,
            spec_type="vega2",
            access=access,
            spec=load_spec(name),
        )
        for name, (_, display) in SPECS.items()
    ]


def _thin(rows: list[list[Any]], limit: int = MAX_TABLE_ROWS) -> list[list[Any]]:
    """At most ``limit`` rows, evenly spaced over ``rows``, the last one included."""
    if len(rows) <= limit:
        return rows
    idx = {round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)}
    return [rows[i] for i in sorted(idx)]


class Tally:
    """What the charts and the summary need, collected from each step's records (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alpha: list[tuple[int, float]] = []
        self.tests: dict[int, dict[str, float]] = {}
        self.last: dict[str, Record] = {}
        self.latest: Record | None = None
        self.quantities: set[str] = set()

    def observe(self, records: Iterable[Record]) -> None:
        """Take note of one batch of records."""
        with self._lock:
            for r in records:
                self.quantities.add(r.quantity)
                if self.latest is None or r.step > self.latest.step:
                    self.latest = Record(r.step, r.quantity, math.nan)
                if not r.is_scalar:
                    continue
                v = float(r.value)
                if not math.isfinite(v):
                    continue
                prev = self.last.get(r.quantity)
                if prev is None or r.step >= prev.step:
                    self.last[r.quantity] = Record(r.step, r.quantity, v)
                if r.quantity == "Alpha":
                    self.alpha.append((r.step, v))
                elif r.quantity in _TESTS:
                    self.tests.setdefault(r.step, {})[_TESTS[r.quantity]] = v

    @property
    def last_step(self) -> int:
        """The largest step seen (``-1`` before any record)."""
        return self.latest.step if self.latest is not None else -1

    def summary(self) -> dict[str, float]:
        """:func:`cockpit_log.summary.run_summary` of everything observed."""
        with self._lock:
            records = [Record(s, "Alpha", a) for s, a in self.alpha]
            records += [r for q, r in self.last.items() if q != "Alpha"]
            if self.latest is not None:
                records.append(self.latest)
        return run_summary(records)

    def alpha_rows(self) -> list[list[Any]]:
        """Alpha table rows ``[step, alpha, last10]`` in step order (thinned to :data:`MAX_TABLE_ROWS`)."""
        with self._lock:
            alphas = sorted(self.alpha)
            last_step = self.last_step
        late = set(last_fraction([(s, s) for s, _ in alphas], 0.1, last_step))  # the summary's window
        return _thin([[s, a, s in late] for s, a in alphas])

    def test_rows(self) -> list[list[Any]]:
        """Gradient-test rows ``[step, norm, inner, ortho]`` (None where a test is missing)."""
        with self._lock:
            items = sorted(self.tests.items())
        return _thin([[s, t.get("norm"), t.get("inner"), t.get("ortho")] for s, t in items])


def chart_row(tally: Tally, entity: str | None) -> dict[str, Any]:
    """The ``run.log`` row with the charts' tables and chart objects (empty when there is no data yet).

    With ``entity``, the custom charts refer to that entity's presets; without, only the tables
    and the built-in presets are logged.
    """
    import wandb

    row: dict[str, Any] = {}
    alpha = tally.alpha_rows()
    if alpha:
        table = wandb.Table(columns=["step", "alpha", "last10"], data=alpha)
        if entity:
            row[f"{CHART_PREFIX}/alpha_distribution"] = wandb.plot_table(
                f"{entity}/{ALPHA_SPEC}",
                table,
                {"alpha": "alpha", "last10": "last10"},
                {"title": "alpha distribution (whole run, last 10 %)"},
            )
        else:
            row[f"{CHART_PREFIX}/alpha_distribution_table"] = table
        row[f"{CHART_PREFIX}/alpha_histogram"] = wandb.plot.histogram(table, "alpha", title="alpha (whole run)")
    tests = tally.test_rows()
    if tests:
        table = wandb.Table(columns=["step", "norm_test", "inner_test", "ortho_test"], data=tests)
        if entity:
            row[f"{CHART_PREFIX}/gradient_tests"] = wandb.plot_table(
                f"{entity}/{GAUGE_SPEC}",
                table,
                {"step": "step", "norm": "norm_test", "inner": "inner_test", "ortho": "ortho_test"},
                {"title": "gradient tests"},
            )
        else:
            row[f"{CHART_PREFIX}/gradient_tests_table"] = table
        full = [r for r in tests if None not in r]
        if full:
            row[f"{CHART_PREFIX}/gradient_tests_over_steps"] = wandb.plot.line_series(
                xs=[r[0] for r in full],
                ys=[[r[1] for r in full], [r[2] for r in full], [r[3] for r in full]],
                keys=["norm test", "inner-product test", "orthogonality test"],
                title="gradient tests over steps",
                xname="step",
            )
    return row
