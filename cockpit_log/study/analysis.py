"""The study's reading: which run is best, where its alpha lies, and which learning rates to try next.

Grounded in Section 3.3 of the paper (Figure 5): across problems, the best runs (indeed all good
runs) have a median alpha > 0 (the optimizer overshoots the valley floor of the local parabola
somewhat), while extreme overshooting hurts. Every statement is computed from the runs:

- **best run**: the best finite value of the metric (``goal`` minimize or maximize); runs without
  one (failed, diverged, not logged) rank last.
- **where its alpha lies** (median over the whole run, Figure 5's x-axis): below 0 (steps stop
  short of the valley floor), between 0 and 1 (overshooting, not past the mirrored point where the
  loss is back at its starting height), or above 1 (past it: the loss rises along the step).
- **coverage**: whether some run has a median alpha < 0 and some > 0, i.e. whether the grid
  brackets the valley floor.
- **next range** (needs a learning-rate parameter): with the distinct learning rates tried (failed
  and diverged runs included) ``lr_0 < ... < lr_{n-1}`` and the best at ``lr_i``, the range runs
  from the neighbour below to the neighbour above (``[lr_{i-1}, lr_{i+1}]``); at an edge of the
  grid it extends two grid steps beyond it (``r`` = the grid's geometric step, 10 for a single
  learning rate). Alpha then narrows it: a best run with alpha < 0 undershoots, so only larger
  rates are kept (``low = lr_i``); one with alpha > 1 overshoots extremely, so only smaller rates
  are kept (``high = lr_i``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .config import Metric
from .runs import FINAL_LOSS, StudyRun, flatten, learning_rate_key

__all__ = ["NextRange", "StudyReading", "alpha_zone", "next_range", "read_study"]


@dataclass(frozen=True)
class NextRange:
    """A learning-rate range to search next, and why."""

    low: float
    high: float
    reason: str


def alpha_zone(alpha: float) -> str:
    """``"undershoot"`` (< 0), ``"overshoot"`` (0 to 1), ``"extreme"`` (> 1) or ``"unknown"`` (NaN)."""
    if not math.isfinite(alpha):
        return "unknown"
    if alpha < 0:
        return "undershoot"
    return "extreme" if alpha > 1 else "overshoot"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def next_range(lrs: Sequence[float], best_lr: float, best_alpha: float) -> NextRange:
    """The learning-rate range to search next (rule in the module docstring).

    Raises:
        ValueError: ``best_lr`` is not among the positive ``lrs``.
    """
    grid = sorted({float(x) for x in lrs if x > 0})
    if best_lr not in grid:
        raise ValueError(f"the best learning rate {best_lr} is not among {grid}")
    i = grid.index(best_lr)
    n = len(grid)
    step = (grid[-1] / grid[0]) ** (1.0 / (n - 1)) if n > 1 else 10.0
    low = grid[i - 1] if i > 0 else best_lr / step**2
    high = grid[i + 1] if i < n - 1 else best_lr * step**2
    if n == 1:
        reason = "a single learning rate was tried: a decade either side of it"
    elif 0 < i < n - 1:
        reason = "the neighbours of the best learning rate in the grid"
    elif i == n - 1:
        reason = "the best learning rate is the largest tried, so the range reaches two grid steps beyond it"
    else:
        reason = "the best learning rate is the smallest tried, so the range reaches two grid steps below it"
    zone = alpha_zone(best_alpha)
    if zone == "undershoot":
        low = best_lr
        reason += "; only larger rates, since the best run undershoots (median alpha < 0)"
    elif zone == "extreme":
        high = best_lr
        reason += "; only smaller rates, since the best run overshoots past the mirrored point (median alpha > 1)"
    return NextRange(low, high, reason)


@dataclass
class StudyReading:
    """The reading of a study (see the module docstring).

    Attributes:
        metric: the metric the runs are ranked by.
        ranked: the runs, best first; those without a finite metric last.
        best: the best run, or None when no run has a finite metric.
        lr_key: the learning-rate parameter, if any.
        next: the range to search next (needs ``lr_key`` and a best run).
        notes: remarks on how the reading was made (e.g. a fallback metric).
    """

    metric: Metric
    ranked: list[StudyRun]
    best: StudyRun | None
    lr_key: str | None
    next: NextRange | None
    notes: list[str] = field(default_factory=list)

    @property
    def next_range(self) -> tuple[float, float] | None:
        """``(low, high)`` of :attr:`next`, or None."""
        return (self.next.low, self.next.high) if self.next is not None else None

    @property
    def alphas(self) -> list[float]:
        """Finite whole-run alpha medians of the runs."""
        return [r.alpha_median for r in self.ranked if math.isfinite(r.alpha_median)]

    @property
    def covers_negative(self) -> bool:
        """Whether some run has a median alpha < 0."""
        return any(a < 0 for a in self.alphas)

    @property
    def covers_positive(self) -> bool:
        """Whether some run has a median alpha > 0."""
        return any(a > 0 for a in self.alphas)

    def metric_value(self, run: StudyRun) -> float:
        """The run's value of the study's metric."""
        return run.value(self.metric.name or FINAL_LOSS)

    def headline(self) -> str:
        """One line: the best run, its metric and its alpha."""
        if self.best is None:
            return f"no run has a finite {self.metric.name}"
        lr = f", lr {_fmt(self.best.param(self.lr_key))}" if self.lr_key else ""
        return (
            f"best run {self.best.name}{lr}: {self.metric.name} {self.metric_value(self.best):.4g}, "
            f"median alpha {self.best.alpha_median:.2f}"
        )

    def paragraphs(self) -> list[str]:
        """The plain-language reading, one paragraph per point."""
        out: list[str] = []
        m = self.metric
        finite = [r for r in self.ranked if math.isfinite(self.metric_value(r))]
        if self.best is None:
            out.append(f"No run has a finite {m.name} ({len(self.ranked)} runs), so there is no best run to read.")
            return out + self.notes
        b = self.best
        lr = f" (lr {_fmt(b.param(self.lr_key))})" if self.lr_key else ""
        out.append(
            f"The best of {len(finite)} runs by {m.name} ({m.goal}) is {b.name}{lr} with "
            f"{self.metric_value(b):.4g}. Its median alpha over the whole run is {b.alpha_median:.2f} "
            f"(last 10 % of training: {b.alpha_median_last10:.2f})."
        )
        zone = alpha_zone(b.alpha_median)
        if zone == "overshoot":
            out.append(
                "That is between 0 and 1: its steps overshoot the valley floor of the local parabola, but do not "
                "land past the mirrored point. This is where the paper found the best runs of every problem it "
                "studied (Section 3.3, Figure 5): stochastic optimizers should overshoot somewhat rather than step "
                "to the valley floor."
            )
        elif zone == "undershoot":
            out.append(
                "That is below 0: its steps stop short of the valley floor of the local parabola. In the paper "
                "(Section 3.3, Figure 5) the best runs of every problem overshoot (median alpha > 0), which "
                "suggests larger learning rates than this one."
            )
        elif zone == "extreme":
            out.append(
                "That is above 1: its steps land past the mirrored point, where the loss is higher than at the "
                "step's start. The paper (Section 3.3) finds such extreme overshooting hurts, which suggests "
                "smaller learning rates than this one."
            )
        else:
            out.append("It has no finite median alpha (no convex Alpha readings), so its alpha cannot be read.")
        out.append(self._coverage())
        positive = [r for r in finite if r.alpha_median > 0]
        negative = [r for r in finite if r.alpha_median < 0]
        if positive and negative:
            rank = {id(r): i for i, r in enumerate(finite, start=1)}
            out.append(
                f"Ranked by {m.name}, the runs with alpha > 0 take places {_ranks(positive, rank)} and those "
                f"with alpha < 0 places {_ranks(negative, rank)} (of {len(finite)})."
            )
        if self.next is not None:
            out.append(
                f"Search learning rates in [{_fmt(self.next.low)}, {_fmt(self.next.high)}] next "
                f"(log-uniform): {self.next.reason}."
            )
        elif self.lr_key is None:
            out.append("No learning-rate parameter was found (lr or learning_rate), so no range is suggested.")
        return out + self.notes

    def _coverage(self) -> str:
        neg = [r for r in self.ranked if math.isfinite(r.alpha_median) and r.alpha_median < 0]
        pos = [r for r in self.ranked if math.isfinite(r.alpha_median) and r.alpha_median > 0]
        if neg and pos:
            return (
                f"The runs cover both alpha < 0 ({self._lr_span(neg)}) and alpha > 0 ({self._lr_span(pos)}): "
                "the grid brackets the valley floor."
            )
        if pos:
            return (
                f"Every run with a finite median alpha overshoots (alpha > 0, {self._lr_span(pos)}): the grid "
                "does not reach alpha < 0; smaller learning rates would show where steps stop short of the valley "
                "floor."
            )
        if neg:
            return (
                f"No run has a median alpha > 0 ({self._lr_span(neg)} all undershoot): the grid does not reach "
                "the overshooting regime where the paper's best runs lie; larger learning rates are worth trying."
            )
        return "No run has a finite median alpha: track Alpha (it is in every preset) to read the step sizes."

    def _lr_span(self, runs: list[StudyRun]) -> str:
        if self.lr_key is None:
            return f"{len(runs)} runs"
        lrs = sorted(r.param(self.lr_key) for r in runs if math.isfinite(r.param(self.lr_key)))
        if not lrs:
            return f"{len(runs)} runs"
        return f"lr {_fmt(lrs[0])}" if lrs[0] == lrs[-1] else f"lr {_fmt(lrs[0])} to {_fmt(lrs[-1])}"

    def text(self) -> str:
        """:meth:`paragraphs` joined by blank lines."""
        return "\n\n".join(self.paragraphs())

    def table(self) -> tuple[list[str], list[list[object]]]:
        """Columns and rows of the runs, best first: rank, run, learning rate, other parameters,
        alpha medians, final training loss, the metric (when it is another one), status."""
        others = sorted({k for r in self.ranked for k in flatten(r.params)} - {self.lr_key})
        metric = self.metric.name or FINAL_LOSS
        columns = ["rank", "run"] + ([self.lr_key] if self.lr_key else []) + others
        columns += ["alpha_median", "alpha_median_last10", FINAL_LOSS]
        if metric != FINAL_LOSS:
            columns.append(metric)
        columns.append("status")
        rows: list[list[object]] = []
        for i, r in enumerate(self.ranked, start=1):
            flat = flatten(r.params)
            row: list[object] = [i, r.name]
            if self.lr_key:
                row.append(r.param(self.lr_key))
            row += [flat.get(k) for k in others]
            row += [r.alpha_median, r.alpha_median_last10, r.train_loss_final]
            if metric != FINAL_LOSS:
                row.append(self.metric_value(r))
            row.append(r.status)
            rows.append(row)
        return columns, rows


def _ranks(runs: list[StudyRun], rank: dict[int, int]) -> str:
    places = [str(rank[id(r)]) for r in sorted(runs, key=lambda r: rank[id(r)])]
    return places[0] if len(places) == 1 else f"{', '.join(places[:-1])} and {places[-1]}"


def read_study(runs: Sequence[StudyRun], metric: Metric | None = None, lr_key: str | None = None) -> StudyReading:
    """Rank ``runs`` by ``metric`` and read them (see the module docstring).

    Without a metric name, or when no run has the named metric, the runs are ranked by their final
    training loss (minimized), with a note saying so.
    """
    runs = list(runs)
    notes: list[str] = []
    metric = metric or Metric()
    if metric.name is None:
        metric = Metric(FINAL_LOSS, "minimize")
        notes.append(f"No metric was named, so the runs are ranked by {FINAL_LOSS} (mean loss of the last 10 %).")
    elif runs and not any(math.isfinite(r.value(metric.name)) for r in runs):
        notes.append(f"No run has the metric {metric.name!r}, so the runs are ranked by {FINAL_LOSS} instead.")
        metric = Metric(FINAL_LOSS, "minimize")

    def key(r: StudyRun) -> float:
        v = r.value(metric.name or FINAL_LOSS)
        return -v if metric.maximize else v

    finite = [r for r in runs if math.isfinite(r.value(metric.name or FINAL_LOSS))]
    rest = [r for r in runs if not math.isfinite(r.value(metric.name or FINAL_LOSS))]
    ranked = sorted(finite, key=key) + rest
    best = ranked[0] if finite else None
    lr_key = learning_rate_key([r.params for r in runs], lr_key)
    nxt = None
    if best is not None and lr_key is not None and math.isfinite(best.param(lr_key)) and best.param(lr_key) > 0:
        # every learning rate tried counts, diverged ones included: they bound the range too
        lrs = [r.param(lr_key) for r in runs if math.isfinite(r.param(lr_key))]
        nxt = next_range(lrs, best.param(lr_key), best.alpha_median)
    return StudyReading(metric, ranked, best, lr_key, nxt, notes)
