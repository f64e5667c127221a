"""The paper's equations as pure functions of small statistics (Appendix C).

Every function takes network-wide statistics as floats or float64 tensors and returns
``(value, reason)``: ``reason`` is ``None`` when the value is defined, else a short sentence and
``value`` is NaN. No epsilon is added to any denominator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..moments import Moments

__all__ = [
    "alpha_from_fit",
    "cabs",
    "early_stopping",
    "fit_quadratic",
    "inner_test",
    "mean_gsnr",
    "norm_test",
    "ortho_test",
]

Result = tuple[float, "str | None"]

NEED_TWO = "needs a batch of at least 2 samples"
ZERO_GRAD = "the mini-batch gradient is zero"


def _check(batch: int, grad_sq: float) -> str | None:
    if batch < 2:
        return NEED_TWO
    if not math.isfinite(grad_sq):
        return "the mini-batch gradient is not finite"
    if grad_sq == 0.0:
        return ZERO_GRAD
    return None


def norm_test(batch: int, centered_sq_total: float, grad_sq: float) -> Result:
    """NormTest, eq. (18a)/(18c): the smallest radius ``theta_norm`` the norm test accepts,

    ``sqrt( sum_n ||g_n - g_B||^2 / (B (B-1) ||g_B||^2) )``.
    """
    reason = _check(batch, grad_sq)
    if reason:
        return math.nan, reason
    return math.sqrt(max(centered_sq_total, 0.0) / (batch * (batch - 1) * grad_sq)), None


def inner_test(batch: int, dot_sq_total: float, grad_sq: float) -> Result:
    """InnerTest, eq. (21c): ``sqrt( (sum_n (g_n^T g_B)^2 / ||g_B||^4 - B) / (B (B-1)) )``.

    ``dot_sq_total`` is ``sum_n (g_n^T g_B)^2``.
    """
    reason = _check(batch, grad_sq)
    if reason:
        return math.nan, reason
    s = dot_sq_total / grad_sq**2 - batch
    return math.sqrt(max(s, 0.0) / (batch * (batch - 1))), None


def ortho_test(batch: int, sq_norm_total: float, dot_sq_total: float, grad_sq: float) -> Result:
    """OrthoTest, eq. (24b): ``sqrt( sum_n (||g_n||^2/||g_B||^2 - (g_n^T g_B)^2/||g_B||^4) / (B (B-1)) )``.

    ``sq_norm_total`` is ``sum_n ||g_n||^2`` and ``dot_sq_total`` is ``sum_n (g_n^T g_B)^2``.
    """
    reason = _check(batch, grad_sq)
    if reason:
        return math.nan, reason
    s = sq_norm_total / grad_sq - dot_sq_total / grad_sq**2
    return math.sqrt(max(s, 0.0) / (batch * (batch - 1))), None


def mean_gsnr(batch: int, grad: Tensor, centered_sq: Tensor) -> Result:
    """MeanGSNR, eq. (30a)-(30b): mean over elements j of ``g_B,j^2 / ((1/B) sum_n g_n,j^2 - g_B,j^2)``.

    The denominator equals ``(1/B) sum_n (g_n,j - g_B,j)^2``. Elements where it vanishes (all
    samples agree on that element, e.g. a dead unit) are left out of the mean; NaN if all vanish.
    """
    if batch < 2:
        return math.nan, NEED_TWO
    denom = centered_sq / batch
    keep = denom > 0
    if not bool(keep.any()):
        return math.nan, "the gradient variance is zero for every element"
    return float((grad[keep].square() / denom[keep]).mean()), None


def early_stopping(batch: int, grad: Tensor, centered_sq: Tensor) -> Result:
    """EarlyStopping, eq. (13d): ``1 - (B (B-1) / D) sum_d g_B,d^2 / (sum_n g_n,d^2 - B g_B,d^2)``.

    The denominator equals ``sum_n (g_n,d - g_B,d)^2``. Elements where it vanishes are left out
    and ``D`` counts the remaining ones; NaN if none remain.
    """
    if batch < 2:
        return math.nan, NEED_TWO
    keep = centered_sq > 0
    d = int(keep.sum())
    if d == 0:
        return math.nan, "the gradient variance is zero for every element"
    s = float((grad[keep].square() / centered_sq[keep]).sum())
    return 1.0 - batch * (batch - 1) / d * s, None


def cabs(batch: int, centered_sq_total: float, loss: float, lr: float | None) -> Result:
    """CABS, eq. (11): suggested batch size ``lr * (1/B) sum_j sum_n (g_n,j - g_B,j)^2 / L_B``."""
    if lr is None:
        return math.nan, "no learning rate known (pass the optimizer, whose first param group has 'lr')"
    if batch < 2:
        return math.nan, NEED_TWO
    if loss == 0.0:
        return math.nan, "the mini-batch loss is zero"
    return lr * centered_sq_total / batch / loss, None


def fit_quadratic(
    step_length: float,
    losses_0: Moments | np.ndarray,
    slopes_0: Moments | np.ndarray,
    losses_1: Moments | np.ndarray,
    slopes_1: Moments | np.ndarray,
) -> np.ndarray:
    """Maximum-likelihood quadratic ``f(tau) = w0 + w1 tau + w2 tau^2``, eq. (8)-(9).

    Positions are ``tau_1 = 0`` and ``tau_2 = ||s||`` along the unit step direction; observations
    are the mean losses and mean slopes at both points, and the noise matrix ``Lambda`` holds the
    sample variances (``ddof=1``) of the individual losses and slopes. Observations with zero
    variance are exact: they become equality constraints, the limit of eq. (9) as their variance
    goes to 0 (all four exact: ordinary least squares). Each observation is given by its values
    or by their :class:`~cockpit_log.moments.Moments` (what a data-parallel run reduces).
    """
    obs = [o if isinstance(o, Moments) else Moments.of(o) for o in (losses_0, losses_1, slopes_0, slopes_1)]
    t2 = step_length
    phi_t = np.array([[1.0, 0.0, 0.0], [1.0, t2, t2**2], [0.0, 1.0, 0.0], [0.0, 1.0, 2 * t2]])
    f = np.array([o.mean for o in obs])
    var = np.array([o.var for o in obs])
    exact = var == 0
    if not exact.any():
        w = 1.0 / var
        lhs = phi_t.T @ (w[:, None] * phi_t)
        return np.linalg.solve(lhs, phi_t.T @ (w * f))
    if exact.all():
        return np.linalg.lstsq(phi_t, f, rcond=None)[0]
    a_n, f_n, w_n = phi_t[~exact], f[~exact], 1.0 / var[~exact]
    a_e, f_e = phi_t[exact], f[exact]
    k = a_e.shape[0]
    kkt = np.block([[a_n.T @ (w_n[:, None] * a_n), a_e.T], [a_e, np.zeros((k, k))]])
    rhs = np.concatenate([a_n.T @ (w_n * f_n), f_e])
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:3]


def alpha_from_fit(w: np.ndarray, step_length: float) -> Result:
    """Normalised step length alpha (Appendix C.2) of a step of length ``||s||`` on ``w``'s parabola.

    With the fitted minimum at ``tau* = -w1 / (2 w2)``: ``alpha = ||s|| / tau* - 1``, so the start
    point gives -1, the minimum 0 and the point mirrored through the minimum +1. NaN when the fit
    is not convex (``w2 <= 0``: no minimum to measure against) or its minimum is at the start.
    """
    w1, w2 = float(w[1]), float(w[2])
    if not (math.isfinite(w1) and math.isfinite(w2)):
        return math.nan, "the quadratic fit is not finite"
    if w2 <= 0:
        return math.nan, "the fitted parabola is not convex (w2 <= 0), so it has no minimum"
    if w1 == 0:
        return math.nan, "the fitted minimum lies at the start point"
    tau_star = -w1 / (2 * w2)
    return step_length / tau_star - 1.0, None


def to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()
