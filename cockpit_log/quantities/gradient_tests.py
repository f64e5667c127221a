"""The gradient tests of Appendix C.6: NormTest (18c), InnerTest (21c), OrthoTest (24b)."""

from __future__ import annotations

from ..records import Record
from ..statistics import Needs, StepStatistics
from . import equations as eq
from .base import Quantity, nan_record

__all__ = ["InnerTest", "NormTest", "OrthoTest"]


class _GradientTest(Quantity):
    def _result(self, stats: StepStatistics) -> eq.Result:
        raise NotImplementedError

    def compute(self, stats: StepStatistics) -> list[Record]:
        problem = stats.per_sample_problem()
        if problem:
            return [nan_record(stats.step, self.name, problem)]
        value, reason = self._result(stats)
        return [Record(stats.step, self.name, value, reason=reason)]


class NormTest(_GradientTest):
    """Norm test (eq. 18c): the smallest ``theta_norm`` with
    ``sum_n ||g_n - g_B||^2 / (B (B-1) ||g_B||^2) <= theta_norm^2``."""

    name = "NormTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(centered_sq=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.norm_test(stats.batch_size or 0, stats.centered_sq_total(), stats.batch_grad_sq_norm())


class InnerTest(_GradientTest):
    """Inner-product test (eq. 21c): the smallest band width ``theta_inner`` it accepts."""

    name = "InnerTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(sample_dots=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.inner_test(stats.batch_size or 0, stats.sample_dots(), stats.batch_grad_sq_norm())


class OrthoTest(_GradientTest):
    """Orthogonality test (eq. 24b): the smallest band width ``nu_ortho`` it accepts."""

    name = "OrthoTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(sample_dots=True, sample_sq_norms=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.ortho_test(
            stats.batch_size or 0, stats.sample_sq_norms(), stats.sample_dots(), stats.batch_grad_sq_norm()
        )
