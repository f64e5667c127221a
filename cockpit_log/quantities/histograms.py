"""GradHist1d (eq. 14) and GradHist2d (eq. 15): histograms of the ``|B| x D`` individual gradient elements."""

from __future__ import annotations

from ..records import Record
from ..schedules import ScheduleLike
from ..statistics import Histogram2dSpec, HistogramSpec, Needs, StepStatistics
from .base import Quantity, nan_record

__all__ = ["GradHist1d", "GradHist2d"]


class GradHist1d(Quantity):
    """Histogram of the individual gradient elements ``g_n(theta)_j`` (eq. 14).

    Network-wide (``value``) and per parameter (``per_param``), on ``bins`` equal bins of
    ``[low, high]``, by default 100 bins on ``[-1, 1]``: the paper's deliberate default range
    (Section 3.1), so that badly scaled data, whose gradients spill far outside it, stands out.
    Values outside the range are counted in the first or last bin (``Histogram1d.below`` /
    ``.above`` say how many); the counts cover all ``|B| * D`` elements (NaNs in ``nonfinite``).
    """

    name = "GradHist1d"

    def __init__(self, schedule: ScheduleLike = None, bins: int = 100, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__(schedule)
        self.spec = HistogramSpec(bins, low, high)

    def needs_at(self, step: int) -> Needs:
        return Needs(hist=self.spec)

    def compute(self, stats: StepStatistics) -> list[Record]:
        problem = stats.per_sample_problem()
        if problem:
            return [nan_record(stats.step, self.name, problem)]
        per = {name: stats.histogram(name) for name in stats.params}
        return [Record(stats.step, self.name, stats.histogram(), per)]


class GradHist2d(Quantity):
    """Joint histogram of parameters and individual gradient elements ``(theta_j, g_n(theta)_j)`` (eq. 15).

    Over all ``|B| * D`` pairs, network-wide (``value``) and per parameter (``per_param``), as a
    :class:`~cockpit_log.records.Histogram2d` whose ``x_marginal()`` / ``y_marginal()`` are the two
    one-dimensional histograms. Bins: ``param_bins`` on ``param_range`` for ``theta_j`` and
    ``grad_bins`` on ``grad_range`` for ``g_n(theta)_j``; by default 50 x 50 bins on
    ``[-1, 1] x [-1, 1]``: fixed ranges, like GradHist1d's, so that runs and steps compare bin by bin
    and out-of-scale values stand out (they are counted in the edge bins, and the ``x_``/``y_``
    ``below``/``above`` fields say how many). Computed in the backward pass, one ``bincount`` per
    parameter over ``|B| * D`` combined bin indices, with the parameter bins computed once.
    """

    name = "GradHist2d"

    def __init__(
        self,
        schedule: ScheduleLike = None,
        param_bins: int = 50,
        grad_bins: int = 50,
        param_range: tuple[float, float] = (-1.0, 1.0),
        grad_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(schedule)
        self.spec = Histogram2dSpec(HistogramSpec(param_bins, *param_range), HistogramSpec(grad_bins, *grad_range))

    def needs_at(self, step: int) -> Needs:
        return Needs(hist2d=self.spec)

    def compute(self, stats: StepStatistics) -> list[Record]:
        problem = stats.per_sample_problem()
        if problem:
            return [nan_record(stats.step, self.name, problem)]
        per = {name: stats.histogram2d(name) for name in stats.params}
        return [Record(stats.step, self.name, stats.histogram2d(), per)]
