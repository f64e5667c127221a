"""Gradient-noise instruments of Appendix C: MeanGSNR (30b), CABS (11), EarlyStopping (13d)."""

from __future__ import annotations

from ..statistics import Needs, StepStatistics
from . import equations as eq
from .base import PerSampleScalar

__all__ = ["CABS", "EarlyStopping", "MeanGSNR"]


class MeanGSNR(PerSampleScalar):
    """Mean gradient signal-to-noise ratio (eq. 30a-30b) over all parameter elements.

    Elements whose gradient variance vanishes are left out of the mean (see
    :func:`cockpit_log.quantities.equations.mean_gsnr`).
    """

    name = "MeanGSNR"

    def needs_at(self, step: int) -> Needs:
        return Needs(centered_sq_elementwise=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.mean_gsnr(stats.batch_size or 0, *stats.elementwise())


class EarlyStopping(PerSampleScalar):
    """Evidence-based early-stopping criterion (eq. 13d); positive values suggest stopping.

    Elements whose gradient variance vanishes are left out and ``D`` counts the rest.
    """

    name = "EarlyStopping"

    def needs_at(self, step: int) -> Needs:
        return Needs(centered_sq_elementwise=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.early_stopping(stats.batch_size or 0, *stats.elementwise())


class CABS(PerSampleScalar):
    """CABS batch-size suggestion (eq. 11), with the learning rate of the optimizer's first param group."""

    name = "CABS"

    def needs_at(self, step: int) -> Needs:
        return Needs(centered_sq=True, losses=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        if stats.loss is None:
            return float("nan"), "no loss value was captured at this step"
        return eq.cabs(stats.batch_size or 0, stats.centered_sq_total(), float(stats.loss), stats.learning_rate)
