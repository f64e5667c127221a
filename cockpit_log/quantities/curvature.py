"""Curvature instruments (Appendix C.7-C.9): HessMaxEV (eq. 25), HessTrace, TICDiag (eq. 28), TICTrace (eq. 27).

All read the curvature of the mini-batch loss ``H_B(theta_t)`` that :mod:`cockpit_log.curvature`
computes once per tracked step; HessTrace, TICDiag and TICTrace with the same ``curvature`` setting
share one diagonal. ``curvature`` selects the paper's alternatives (Appendix C.8):

- ``"hessian"`` (default): the exact Hessian diagonal (BackPACK's ``DiagHessian``);
- ``"ggn"``: the exact diagonal of the generalised Gauss-Newton matrix ``J^T H_loss J``;
- ``"ggn_mc"``: its Monte-Carlo estimate from ``mc_samples`` sampled labels per input (1 by default,
  the paper's recommendation for many classes; unbiased, cheaper).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..curvature import DiagKind, EigenSettings
from ..records import Record
from ..schedules import ScheduleLike
from ..statistics import Needs, StepStatistics
from .base import Quantity, nan_record

__all__ = ["HessMaxEV", "HessTrace", "TICDiag", "TICTrace"]


class _DiagonalQuantity(Quantity):
    """A quantity reading a curvature diagonal of the chosen kind."""

    def __init__(self, schedule: ScheduleLike = None, curvature: str = "hessian", mc_samples: int = 1) -> None:
        super().__init__(schedule)
        self.kind = DiagKind(curvature, mc_samples)

    def needs_at(self, step: int) -> Needs:
        return Needs(diagonals=frozenset({self.kind}))

    def _diagonal(self, stats: StepStatistics) -> tuple[dict[str, Tensor] | None, str | None]:
        problem = stats.curvature_problems.get("diagonals")
        if problem:
            return None, problem
        diag = stats.diagonals.get(self.kind)
        if not diag:
            return None, "no curvature diagonal was computed at this step"
        return {n: d.detach().to(torch.float64) for n, d in diag.items()}, None

    def _diagonal_and_moments(self, stats: StepStatistics) -> tuple[dict[str, Tensor] | None, str | None]:
        """The diagonal, when this step's per-sample second moments are usable too (TIC)."""
        problem = stats.per_sample_problem()
        diag, curv_problem = self._diagonal(stats)
        if problem or diag is None:
            return None, problem or curv_problem
        return diag, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r}, curvature={str(self.kind)!r})"


class HessTrace(_DiagonalQuantity):
    """``Tr(H_B(theta))``: the sum of the curvature diagonal (Appendix C.8), network-wide and per parameter."""

    name = "HessTrace"

    def compute(self, stats: StepStatistics) -> list[Record]:
        diag, problem = self._diagonal(stats)
        if diag is None:
            return [nan_record(stats.step, self.name, problem or "")]
        per = {n: float(d.sum()) for n, d in diag.items()}
        return [Record(stats.step, self.name, float(sum(per.values())), per)]


class TICTrace(_DiagonalQuantity):
    """TIC from traces (eq. 27): ``(1/|B|) sum_n ||g_n||^2 / Tr(H_B)``, network-wide and per parameter.

    NaN (with the reason) when ``Tr(H_B) = 0``; a parameter whose curvature block has zero trace is
    left out of ``per_param``.
    """

    name = "TICTrace"

    def needs_at(self, step: int) -> Needs:
        return super().needs_at(step) | Needs(sample_sq_norms=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        diag, problem = self._diagonal_and_moments(stats)
        if diag is None:
            return [nan_record(stats.step, self.name, problem or "")]
        batch = stats.batch_size or 0
        traces = {n: float(d.sum()) for n, d in diag.items()}
        per = {n: stats.sq_norm_total(n) / batch / t for n, t in traces.items() if t != 0 and n in stats.params}
        trace = sum(traces.values())
        if trace == 0:
            return [Record(stats.step, self.name, math.nan, per, reason="the curvature trace is zero")]
        return [Record(stats.step, self.name, stats.sq_norm_total() / batch / trace, per)]


class TICDiag(_DiagonalQuantity):
    """TIC with a diagonal curvature (eq. 28): ``(1/|B|) sum_j [sum_n g_n^2]_j / [H_B]_jj``.

    Network-wide and per parameter. No epsilon is added: elements with ``[H_B]_jj = 0`` (no
    curvature information, e.g. behind dead ReLUs) are left out of the sum; NaN (with the reason)
    when every element is. Negative diagonal entries (non-convex directions) enter as they are.
    """

    name = "TICDiag"

    def needs_at(self, step: int) -> Needs:
        return super().needs_at(step) | Needs(second_moment=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        diag, problem = self._diagonal_and_moments(stats)
        if diag is None:
            return [nan_record(stats.step, self.name, problem or "")]
        batch = stats.batch_size or 0
        per: dict[str, float] = {}
        used = 0
        for n, h in diag.items():
            if n not in stats.params:
                continue
            keep = h != 0
            if not bool(keep.any()):
                continue
            used += int(keep.sum())
            moment = stats.second_moment_elementwise(n).reshape(h.shape)
            per[n] = float((moment[keep] / h[keep]).sum()) / batch
        if used == 0:
            return [Record(stats.step, self.name, math.nan, per, reason="every curvature diagonal element is zero")]
        return [Record(stats.step, self.name, float(sum(per.values())), per)]


class HessMaxEV(Quantity):
    """``lambda_max(H_B(theta))``, the largest algebraic eigenvalue of the mini-batch Hessian (eq. 25).

    From Hessian-vector products (Pearlmutter) on the recomputed loss. ``method="lanczos"`` (default)
    stops when the Ritz residual bound is below ``max(rtol |lambda|, atol)``; ``"power"`` is the
    paper's power iteration with its stopping rule (at most ``max_iter`` = 100 products, relative
    tolerance 1e-3, absolute 1e-6), shifted when the dominant eigenvalue is negative so that the
    result is still the largest algebraic one. ``info``: ``hvps`` (products taken), ``converged``
    (1 or 0) and ``residual`` (Lanczos only).
    """

    name = "HessMaxEV"

    def __init__(
        self,
        schedule: ScheduleLike = None,
        method: str = "lanczos",
        max_iter: int = 100,
        rtol: float = 1e-3,
        atol: float = 1e-6,
    ) -> None:
        super().__init__(schedule)
        self.settings = EigenSettings(method, max_iter, rtol, atol)

    def needs_at(self, step: int) -> Needs:
        return Needs(max_ev=self.settings)

    def compute(self, stats: StepStatistics) -> list[Record]:
        problem = stats.curvature_problems.get("eigen")
        if problem or stats.eigen is None:
            return [nan_record(stats.step, self.name, problem or "no eigenvalue was computed at this step")]
        res = stats.eigen
        info = {"hvps": float(res.products), "converged": float(res.converged)}
        if not math.isnan(res.residual):
            info["residual"] = res.residual
        return [Record(stats.step, self.name, float(res.value), info=info)]

    def __repr__(self) -> str:
        return f"HessMaxEV(schedule={self.schedule!r}, method={self.settings.method!r})"
