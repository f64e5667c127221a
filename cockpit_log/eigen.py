"""Largest algebraic eigenvalue of a symmetric operator known only through products (HessMaxEV, eq. 25).

Two matrix-free solvers, each counting the operator products it takes:

- :func:`lanczos_max_eigenvalue` (the default): Lanczos with full reorthogonalisation. The largest
  Ritz value of the tridiagonal projection converges to ``lambda_max`` (the largest *algebraic*
  eigenvalue, not the largest in magnitude). It stops when the Ritz pair's residual bound
  ``beta_k |y_k|`` falls below ``max(rtol * |theta|, atol)``, which guarantees an eigenvalue of the
  operator within that distance of the reported value, or after ``max_iter`` products.
- :func:`power_max_eigenvalue`: the paper's power iteration (Appendix C.7): Rayleigh quotients of
  ``v <- Av / ||Av||`` until two successive estimates agree within ``atol + rtol * |estimate|``
  (defaults ``rtol=1e-3``, ``atol=1e-6``, at most 100 products). Power iteration finds the eigenvalue
  largest in *magnitude*; when that one is negative, a second run on the shifted operator
  ``A - lambda_dom I`` (whose spectrum is ``>= 0``) recovers ``lambda_max``.

Vectors are flat tensors; scalar bookkeeping is done in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EigenResult", "lanczos_max_eigenvalue", "power_max_eigenvalue"]

Operator = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class EigenResult:
    """Estimate of the largest eigenvalue and how it was obtained."""

    value: float
    #: operator (Hessian-vector) products taken
    products: int
    #: whether the stopping rule was met before ``max_iter``
    converged: bool
    #: residual ``||A v - value v||`` bound of the returned pair (NaN where not computed)
    residual: float = math.nan


def _unit(v: Tensor) -> Tensor:
    norm = torch.linalg.vector_norm(v)
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("start vector must be finite and nonzero")
    return v / norm


def lanczos_max_eigenvalue(
    apply: Operator, start: Tensor, max_iter: int = 100, rtol: float = 1e-3, atol: float = 1e-6
) -> EigenResult:
    """Largest algebraic eigenvalue of the symmetric operator ``apply`` by Lanczos iteration.

    Args:
        apply: ``v -> A v`` for flat ``v``.
        start: nonzero start vector (random, from the caller's own generator).
        max_iter: most products taken (and the largest Krylov dimension).
        rtol, atol: stop when the residual bound is ``<= max(rtol * |theta|, atol)``.
    """
    dim = start.numel()
    max_iter = max(1, min(max_iter, dim))
    v0 = _unit(start.reshape(-1))
    # the Krylov basis as rows of one matrix, grown in chunks (no re-stacking of all rows per iteration)
    basis = torch.empty(min(max_iter + 1, 16), dim, dtype=v0.dtype, device=v0.device)
    basis[0] = v0
    alphas: list[float] = []
    betas: list[float] = []
    theta, residual = math.nan, math.nan
    for k in range(max_iter):
        w = apply(basis[k])
        alpha = float(torch.dot(w.double(), basis[k].double()))
        if not math.isfinite(alpha):
            return EigenResult(math.nan, k + 1, False, math.nan)
        alphas.append(alpha)
        # full reorthogonalisation against every basis vector (twice is enough, Kahan-Parlett)
        stacked = basis[: k + 1]
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = float(torch.linalg.vector_norm(w))
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        theta = float(evals[-1])
        residual = abs(beta * float(evecs[-1, -1]))
        if not math.isfinite(theta):
            return EigenResult(theta, k + 1, False, residual)
        if residual <= max(rtol * abs(theta), atol) or beta <= atol * 1e-6:
            return EigenResult(theta, k + 1, True, residual)
        betas.append(beta)
        if k + 1 >= basis.shape[0]:
            grown = torch.empty(min(2 * basis.shape[0], max_iter + 1), dim, dtype=basis.dtype, device=basis.device)
            grown[: basis.shape[0]] = basis
            basis = grown
        basis[k + 1] = w / beta
    return EigenResult(theta, max_iter, False, residual)


def _power(
    apply: Operator, start: Tensor, max_iter: int, rtol: float, atol: float, shift: float = 0.0
) -> tuple[float, int, bool]:
    v = _unit(start.reshape(-1))
    estimate = math.nan
    for k in range(max_iter):
        av = apply(v) - shift * v
        new = float(torch.dot(av.double(), v.double()))
        norm = torch.linalg.vector_norm(av)
        if not math.isfinite(new):
            return new, k + 1, False
        if math.isfinite(estimate) and abs(new - estimate) <= atol + rtol * abs(new):
            return new, k + 1, True
        estimate = new
        if norm == 0:
            return 0.0, k + 1, True
        v = av / norm
    return estimate, max_iter, False


def power_max_eigenvalue(
    apply: Operator, start: Tensor, max_iter: int = 100, rtol: float = 1e-3, atol: float = 1e-6
) -> EigenResult:
    """Largest algebraic eigenvalue by power iteration (the paper's solver, Appendix C.7).

    ``max_iter`` bounds each of the (at most two) runs; ``products`` counts both.
    """
    dominant, used, converged = _power(apply, start, max_iter, rtol, atol)
    if not math.isfinite(dominant) or dominant >= 0:
        return EigenResult(dominant, used, converged)
    shifted, more, converged = _power(apply, start, max_iter, rtol, atol, shift=dominant)
    return EigenResult(shifted + dominant, used + more, converged)
