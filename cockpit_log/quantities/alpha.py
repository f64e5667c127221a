"""Alpha, the normalised step length (Appendix C.2, eq. 8-9)."""

from __future__ import annotations

import math

from ..moments import Moments
from ..records import Record
from ..statistics import Needs, StepStatistics
from . import equations as eq
from .base import Quantity, nan_record

__all__ = ["Alpha"]


class Alpha(Quantity):
    """Where on a noise-informed parabola along the actual update the optimizer lands.

    At step t the individual losses ``l_n(theta_t)`` and slopes ``u^T g_n(theta_t)`` along the
    unit update direction ``u = s / ||s||``, ``s = theta_{t+1} - theta_t``, are observed; at step
    t+1 the same at ``theta_{t+1}`` on the next batch. Eq. (9) fits ``f(tau)`` through both
    points (``tau = 0`` and ``tau = ||s||``), weighting each observation by the inverse sample
    variance of its individual values (eq. 8). ``alpha = ||s|| / tau* - 1`` with ``tau*`` the fitted
    minimum: -1 at the start point, 0 at the minimum, +1 at the mirrored point. NaN (with a reason)
    when the fit is not convex, the update is zero, or a batch has fewer than 2 samples.

    The record is stamped with step t and written at step t+1; a run that stops right after a
    tracked step has no reading for it.
    """

    name = "Alpha"
    two_step = True

    def __init__(self, schedule=None) -> None:  # noqa: ANN001 - see Quantity
        super().__init__(schedule)
        self._start: tuple[int, float, Moments, Moments] | None = None

    def needs_at(self, step: int) -> Needs:
        return Needs(losses=True, keep_layer_io=True, params_before=True)

    def needs_as_end(self, step: int) -> Needs:
        return Needs(losses=True, end_slopes=True)

    def _observations(
        self, losses: Moments | None, slopes: Moments | None, length: float
    ) -> tuple[Moments, Moments] | str:
        if losses is None:
            return "no individual losses were captured"
        if slopes is None:
            return "no backward pass through the model was observed"
        if losses.count < 2:
            return eq.NEED_TWO
        return losses, slopes.scaled(1.0 / length)

    def compute(self, stats: StepStatistics) -> list[Record]:
        records: list[Record] = []
        if self._start is not None and self._start[0] == stats.step - 1:
            start_step, length, losses_0, slopes_0 = self._start
            if stats.totals is not None and stats.totals.start is not None:
                # data-parallel: the start point's moments over the global batch, reduced at this step
                losses_0, slopes_0 = stats.totals.start[0], stats.totals.start[1].scaled(1.0 / length)
            obs = self._observations(stats.loss_moments(), stats.end_slope_moments(), length)
            if isinstance(obs, str):
                records.append(nan_record(start_step, self.name, f"at the end point: {obs}"))
            else:
                w = eq.fit_quadratic(length, losses_0, slopes_0, *obs)
                value, reason = eq.alpha_from_fit(w, length)
                records.append(Record(start_step, self.name, value, reason=reason))
        self._start = None
        if self.is_due(stats.step):
            start = self._begin(stats)
            if isinstance(start, str):
                records.append(nan_record(stats.step, self.name, start))
        return records

    def _begin(self, stats: StepStatistics) -> str | None:
        if not stats.update:
            return "the update was not observed"
        length = math.sqrt(sum(float(s.double().square().sum()) for s in stats.update.values()))
        if length == 0.0:
            return "the optimizer did not move the parameters (zero update)"
        if not math.isfinite(length):
            return "the update is not finite"
        obs = self._observations(stats.loss_moments(), stats.start_slope_moments(), length)
        if isinstance(obs, str):
            return obs
        self._start = (stats.step, length, *obs)
        return None
