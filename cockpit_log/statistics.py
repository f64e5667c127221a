"""Per-step statistics, computed once per step inside the backward pass and shared by quantities.

Per-sample gradients ``g_n`` (scaled as in :mod:`cockpit_log.individual_losses`) exist only
inside one layer's backward hook: :meth:`StepStatistics.add_layer` reduces them at once
(:mod:`cockpit_log.reduce`; closed forms for ``nn.Linear``, blocks of samples otherwise) to the
small statistics the quantities read:

============================  ===================================  ==========================
statistic                     shape, per parameter p               read by
============================  ===================================  ==========================
``batch_grad``  g_B,p         D_p                                  InnerTest, OrthoTest, ...
``sample_sq_norms``           B: ||g_n,p||^2                       OrthoTest, NormTest, CABS,
                                                                   TICTrace
``sample_dots``               B: g_n,p^T g_B,p                     InnerTest, OrthoTest
``second_moment``             D_p: sum_n g_n,p^2                   TICDiag
``centered_sq``               D_p: sum_n (g_n,p - g_B,p)^2         MeanGSNR, EarlyStopping
``hist``                      bins: counts of the B*D_p elements   GradHist1d
``end_slopes``                B: s^T g_n                           Alpha (end point)
``hist2d``                    bins x bins: counts of (theta_j,     GradHist2d
                              g_n,j) pairs
============================  ===================================  ==========================

The centred total ``sum_n ||g_n - g_B||^2`` (NormTest, CABS) is ``sum_n ||g_n||^2 - B ||g_B||^2``,
summed in float64 from the per-sample norms; the element-wise centred sums (MeanGSNR,
EarlyStopping) are taken from the elements themselves, since there a small variance next to a large
mean is common and a difference would cancel.

Curvature (Hessian or GGN diagonals, HessMaxEV) is computed after the backward pass, by
:mod:`cockpit_log.curvature`, and stored here as ``diagonals`` and ``eigen``.

Network-wide values are sums over parameters (norms, dot products and centred sums of squares
all decompose over parameter blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .curvature import CapturedBatch, DiagKind, EigenSettings
from .eigen import EigenResult
from .individual_losses import share_scale
from .moments import Moments
from .per_sample import layer_slopes
from .records import Histogram1d, Histogram2d
from .reduce import LayerRequest, reduce_layer

__all__ = ["GlobalTotals", "Histogram2dSpec", "HistogramSpec", "Needs", "StepStatistics"]

PER_SAMPLE_REUSE = (
    "per-sample gradients came from more than one backward call or module use in this step "
    "(gradient accumulation, or a module/parameter used twice in one forward); use the explicit "
    "API `with ck.backward(...)` around one backward per step"
)


@dataclass(frozen=True)
class HistogramSpec:
    """Bins of a gradient-element histogram: ``bins`` equal bins on ``[low, high]``."""

    bins: int = 100
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.bins < 1 or not self.low < self.high:
            raise ValueError(f"histogram needs bins >= 1 and low < high, got {self}")

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)


@dataclass(frozen=True)
class Histogram2dSpec:
    """Bins of GradHist2d: ``x`` for parameter values ``theta_j``, ``y`` for gradient elements."""

    x: HistogramSpec = HistogramSpec(50, -1.0, 1.0)
    y: HistogramSpec = HistogramSpec(50, -1.0, 1.0)


@dataclass
class Needs:
    """What the quantities due at one step need computed. ``a | b`` merges two."""

    losses: bool = False
    batch_grad: bool = False
    sample_sq_norms: bool = False
    sample_dots: bool = False
    centered_sq: bool = False
    centered_sq_elementwise: bool = False
    second_moment: bool = False
    hist: HistogramSpec | None = None
    keep_layer_io: bool = False
    end_slopes: bool = False
    params_before: bool = False
    hist2d: Histogram2dSpec | None = None
    diagonals: frozenset[DiagKind] = frozenset()
    max_ev: EigenSettings | None = None

    def __or__(self, other: Needs) -> Needs:
        merged: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, frozenset):
                merged[f.name] = a | b
            elif f.name in ("hist", "hist2d", "max_ev"):
                if a is not None and b is not None and a != b:
                    raise ValueError(f"two different {f.name} settings in one cockpit: {a} and {b}")
                merged[f.name] = a if a is not None else b
            else:
                merged[f.name] = a or b
        return Needs(**merged)

    @property
    def curvature(self) -> bool:
        """Whether the loss must be recomputed for curvature at this step."""
        return bool(self.diagonals) or self.max_ev is not None

    @property
    def per_sample(self) -> bool:
        """Whether per-sample gradients must be formed in the backward pass."""
        return bool(
            self.sample_sq_norms
            or self.sample_dots
            or self.centered_sq
            or self.centered_sq_elementwise
            or self.second_moment
            or self.hist is not None
            or self.hist2d is not None
        )

    @property
    def any_backward(self) -> bool:
        """Whether layer hooks have anything to do in this step's backward pass."""
        return self.per_sample or self.keep_layer_io or self.end_slopes


@dataclass
class ParamStats:
    """The statistics of one parameter at one step (see the module docstring)."""

    batch_grad: Tensor | None = None
    sample_sq_norms: Tensor | None = None
    sample_dots: Tensor | None = None
    second_moment: Tensor | None = None
    centered_sq: Tensor | None = None
    hist: Tensor | None = None
    hist_extra: Tensor | None = None
    hist2d: Tensor | None = None
    hist2d_extra: Tensor | None = None
    calls: int = 0


@dataclass
class LayerIO:
    """What one layer saw in a tracked step, kept for slopes once the update is known."""

    module: nn.Module
    inputs: tuple[Tensor, ...]
    delta: Tensor
    names: dict[str, str]  # local parameter name -> model parameter name


@dataclass
class GlobalTotals:
    """Sums over the global batch of a data-parallel step (filled in by :mod:`cockpit_log.distributed`).

    Where a single process reads its per-sample vectors, a data-parallel step reads these totals;
    the element-wise statistics and histograms are replaced in place by their global sums.
    """

    batch_size: int
    #: this process's own share of the batch
    local_batch: int = 0
    #: ``sum_n ||g_n,p||^2`` per parameter
    sq_norms: dict[str, float] = field(default_factory=dict)
    #: ``sum_n (g_n^T g_B)^2`` with the global ``g_B``
    dot_sq: float | None = None
    losses: Moments | None = None
    end_slopes: Moments | None = None
    #: individual losses and (unnormalised) slopes of the previous step, Alpha's start point
    start: tuple[Moments, Moments] | None = None


@dataclass
class StepStatistics:
    """Everything measured at one step ``t`` (parameters ``theta_t``, batch ``B_t``)."""

    step: int
    needs: Needs
    batch_size: int | None = None
    individual_losses: Tensor | None = None
    loss: Tensor | None = None
    params: dict[str, ParamStats] = field(default_factory=dict)
    layer_io: list[LayerIO] = field(default_factory=list)
    end_direction: Mapping[str, Tensor] | None = None
    end_slopes: Tensor | None = None
    start_slopes_value: Tensor | None = None
    grad_norms: dict[str, Tensor] = field(default_factory=dict)
    params_before: dict[str, Tensor] = field(default_factory=dict)
    initial_params: Mapping[str, Tensor] | None = None
    update: dict[str, Tensor] = field(default_factory=dict)
    learning_rate: float | None = None
    grad_scale: float = 1.0
    problem: str | None = None
    _network: dict[str, Any] = field(default_factory=dict, repr=False)
    elapsed: float | None = None
    #: curvature diagonals per kind and parameter (``cockpit_log.curvature``)
    diagonals: dict[DiagKind, dict[str, Tensor]] = field(default_factory=dict)
    #: HessMaxEV's eigenvalue estimate
    eigen: EigenResult | None = None
    #: the model call and loss targets of this step, kept for the curvature recompute
    batch: CapturedBatch | None = None
    #: why a curvature computation failed, by ``"diagonals"`` / ``"eigen"``
    curvature_problems: dict[str, str] = field(default_factory=dict)
    #: data-parallel step: per-sample dots wait for the averaged gradient (see ``cockpit_log.distributed``)
    distributed: bool = False
    #: global sums of a data-parallel step, once reduced
    totals: GlobalTotals | None = None
    #: why no records are written at this step (data-parallel steps with uneven local batches)
    skip_reason: str | None = None
    #: data-parallel runs with rank diagnostics: local values of every process, by name
    rank_values: dict[str, list[float]] = field(default_factory=dict)

    # ------------------------------------------------------------------ backward pass
    def add_layer(self, module: nn.Module, inputs: tuple[Tensor, ...], delta: Tensor, names: dict[str, str]) -> None:
        """Reduce one layer's per-sample gradients (called from its backward hook)."""
        needs = self.needs
        batch = delta.shape[0]
        scale = share_scale(batch) / self.grad_scale
        if self.batch_size is None:
            self.batch_size = batch
        if needs.keep_layer_io:
            self.layer_io.append(LayerIO(module, inputs, delta, names))
        if needs.end_slopes and self.end_direction is not None:
            direction = {n: self.end_direction[full] for n, full in names.items()}
            params = {n: p.detach() for n, p in module.named_parameters(recurse=False) if n in names}
            slopes = layer_slopes(module, inputs, delta, params, direction) * scale
            self.end_slopes = slopes if self.end_slopes is None else self.end_slopes + slopes
        if not needs.per_sample:
            return
        fresh = {}
        for local, full in names.items():
            st = self.params.setdefault(full, ParamStats())
            st.calls += 1
            if st.calls == 1:  # a second call means reuse or accumulation: flagged through `calls`
                fresh[local] = full
        if not fresh:
            return
        results = reduce_layer(module, inputs, delta, list(fresh), scale, self._request())
        for local, full in fresh.items():
            res, st = results[local], self.params[full]
            st.batch_grad = res.batch_grad
            st.sample_sq_norms = res.sample_sq_norms
            st.sample_dots = res.sample_dots
            st.second_moment = res.second_moment
            st.centered_sq = res.centered
            st.hist, st.hist_extra = res.hist, res.hist_extra
            st.hist2d, st.hist2d_extra = res.hist2d, res.hist2d_extra

    def _request(self) -> LayerRequest:
        needs = self.needs
        h, h2 = needs.hist, needs.hist2d
        return LayerRequest(
            norms=needs.sample_sq_norms or needs.centered_sq,
            dots=needs.sample_dots and not self.distributed,
            second_moment=needs.second_moment,
            centered=needs.centered_sq_elementwise,
            hist=(h.low, h.high, h.bins) if h is not None else None,
            hist2d_x=(h2.x.low, h2.x.high, h2.x.bins) if h2 is not None else None,
            hist2d_y=(h2.y.low, h2.y.high, h2.y.bins) if h2 is not None else None,
        )

    # ------------------------------------------------------------------ after the update
    def start_slopes(self, direction: Mapping[str, Tensor]) -> Tensor | None:
        """``s^T g_n(theta_t)`` for every sample of this step, once ``s`` is known.

        Uses the layer inputs and output gradients kept during backward and the parameters
        ``theta_t`` saved before the update; frees them afterwards.
        """
        total = self.slopes(direction, self.params_before)
        self.layer_io.clear()
        return total

    def slopes(self, direction: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> Tensor | None:
        """``direction^T g_n`` for every sample, from the kept layer inputs and output gradients.

        ``params`` are the parameter values of this step's forward pass (by model name).
        """
        total: Tensor | None = None
        for io in self.layer_io:
            local_dir = {n: direction[full] for n, full in io.names.items()}
            local_params = {n: params[full] for n, full in io.names.items()}
            slopes = layer_slopes(io.module, io.inputs, io.delta, local_params, local_dir)
            slopes = slopes * (share_scale(io.delta.shape[0]) / self.grad_scale)
            total = slopes if total is None else total + slopes
        return total

    # ------------------------------------------------------------------ network-wide views
    def per_sample_problem(self) -> str | None:
        """Why per-sample statistics of this step are unusable, or None."""
        if self.problem:
            return self.problem
        if not self.params:
            return "no backward pass through the model was observed at this step"
        if max(st.calls for st in self.params.values()) > 1:
            return PER_SAMPLE_REUSE
        return None

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        """Network-wide statistics are summed over parameters once per step, however many read them."""
        if key not in self._network:
            self._network[key] = compute()
        return self._network[key]

    def _sum(self, attr: str) -> Tensor:
        return self._once(attr, lambda: torch.stack([_f64(getattr(st, attr)) for st in self.params.values()]).sum(0))

    def batch_grad_sq_norm(self) -> float:
        """``||g_B||^2`` from the per-sample gradients of this backward pass."""
        return self._once(
            "batch_grad_sq_norm", lambda: float(sum(_f64(st.batch_grad).square().sum() for st in self.params.values()))
        )

    def sample_sq_norms(self) -> Tensor:
        """``||g_n||^2`` for every sample (float64)."""
        return self._sum("sample_sq_norms")

    def sample_dots(self) -> Tensor:
        """``g_n^T g_B`` for every sample (float64)."""
        return self._sum("sample_dots")

    def centered_sq_total(self) -> float:
        """``sum_n ||g_n - g_B||^2 = sum_n ||g_n||^2 - B ||g_B||^2`` (float64; rounding below zero gives 0)."""
        batch = self.batch_size or 0
        total = self.sq_norm_total() - batch * self.batch_grad_sq_norm()
        return max(total, 0.0)

    def sq_norm_total(self, name: str | None = None) -> float:
        """``sum_n ||g_n||^2`` of one parameter block, or network-wide (float64)."""
        if self.totals is not None:
            return self.totals.sq_norms[name] if name is not None else float(sum(self.totals.sq_norms.values()))
        if name is None:
            return float(self.sample_sq_norms().sum())
        return float(_f64(self.params[name].sample_sq_norms).sum())

    def dot_sq_total(self) -> float:
        """``sum_n (g_n^T g_B)^2`` (float64)."""
        if self.totals is not None:
            if self.totals.dot_sq is None:
                raise KeyError("statistic missing")
            return self.totals.dot_sq
        return float(self.sample_dots().square().sum())

    def loss_moments(self) -> Moments | None:
        """Mean and variance of the individual losses ``l_n`` of this step's batch, if captured."""
        if self.totals is not None:
            return self.totals.losses
        return Moments.of(self.individual_losses) if self.individual_losses is not None else None

    def end_slope_moments(self) -> Moments | None:
        """Moments of ``s^T g_n`` along the previous step's update ``s`` (Alpha's end point)."""
        if self.totals is not None:
            return self.totals.end_slopes
        return Moments.of(self.end_slopes) if self.end_slopes is not None else None

    def start_slope_moments(self) -> Moments | None:
        """Moments of ``s^T g_n`` along this step's own update ``s`` (Alpha's start point), local batch."""
        return Moments.of(self.start_slopes_value) if self.start_slopes_value is not None else None

    def elementwise(self) -> tuple[Tensor, Tensor]:
        """``(g_B, sum_n (g_n - g_B)^2)`` over all parameter elements, concatenated (float64)."""
        return self._once(
            "elementwise",
            lambda: (
                torch.cat([_f64(st.batch_grad) for st in self.params.values()]),
                torch.cat([_f64(st.centered_sq) for st in self.params.values()]),
            ),
        )

    def histogram(self, name: str | None = None) -> Histogram1d:
        """Histogram of the gradient elements of one parameter, or of all (``name=None``)."""
        spec = self.needs.hist
        assert spec is not None
        items = [self.params[name]] if name is not None else list(self.params.values())
        counts = sum(st.hist for st in items)
        extra = sum(st.hist_extra for st in items)
        below, above, nan = (int(v) for v in extra.tolist())
        return Histogram1d(
            counts=counts.cpu().numpy().astype(np.int64), edges=spec.edges, below=below, above=above, nonfinite=nan
        )

    def histogram2d(self, name: str | None = None) -> Histogram2d:
        """Joint histogram of (parameter, gradient element) pairs of one parameter, or of all."""
        spec = self.needs.hist2d
        assert spec is not None
        items = [self.params[name]] if name is not None else list(self.params.values())
        counts = sum(st.hist2d for st in items)
        extra = [int(v) for v in sum(st.hist2d_extra for st in items).tolist()]
        return Histogram2d(
            counts=counts.cpu().numpy().astype(np.int64),
            x_edges=spec.x.edges,
            y_edges=spec.y.edges,
            x_below=extra[0],
            x_above=extra[1],
            y_below=extra[2],
            y_above=extra[3],
            nonfinite=extra[4],
        )

    def second_moment_elementwise(self, name: str) -> Tensor:
        """``sum_n g_n,p^2`` elementwise for parameter ``p`` (float64)."""
        return _f64(self.params[name].second_moment)



def _f64(t: Tensor | None) -> Tensor:
    if t is None:
        raise KeyError("statistic missing")
    return t.detach().to(torch.float64)
