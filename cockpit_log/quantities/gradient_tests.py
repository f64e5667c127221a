"""The gradient tests of Appendix C.6: NormTest (18c), InnerTest (21c), OrthoTest (24b)."""

from __future__ import annotations

from ..statistics import Needs, StepStatistics
from . import equations as eq
from .base import PerSampleScalar

__all__ = ["InnerTest", "NormTest", "OrthoTest"]


class NormTest(PerSampleScalar):
    """Norm test (eq. 18c): the smallest ``theta_norm`` with
    ``sum_n ||g_n - g_B||^2 / (B (B-1) ||g_B||^2) <= theta_norm^2``."""

    name = "NormTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(centered_sq=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.norm_test(stats.batch_size or 0, stats.centered_sq_total(), stats.batch_grad_sq_norm())


class InnerTest(PerSampleScalar):
    """Inner-product test (eq. 21c): the smallest band width ``theta_inner`` it accepts."""

    name = "InnerTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(sample_dots=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.inner_test(stats.batch_size or 0, stats.dot_sq_total(), stats.batch_grad_sq_norm())


class OrthoTest(PerSampleScalar):
    """Orthogonality test (eq. 24b): the smallest band width ``nu_ortho`` it accepts."""

    name = "OrthoTest"

    def needs_at(self, step: int) -> Needs:
        return Needs(sample_dots=True, sample_sq_norms=True)

    def _result(self, stats: StepStatistics) -> eq.Result:
        return eq.ortho_test(
            stats.batch_size or 0, stats.sq_norm_total(), stats.dot_sq_total(), stats.batch_grad_sq_norm()
        )
