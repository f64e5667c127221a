"""GradHist1d (eq. 14): histogram of the ``|B| x D`` individual gradient elements."""

from __future__ import annotations

from ..records import Record
from ..schedules import ScheduleLike
from ..statistics import HistogramSpec, Needs, StepStatistics
from .base import Quantity, nan_record

__all__ = ["GradHist1d"]


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
