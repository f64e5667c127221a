"""Data-parallel training: the instruments of the *global* batch, from one all-reduce per tracked step.

With ``DistributedDataParallel`` over ``P`` processes, process ``r`` holds a local batch of ``b_r``
samples and DDP averages the local mean gradients, so the optimizer applies ``g_B``, the mean over
the global batch of ``B = sum_r b_r`` samples (when the ``b_r`` are equal). Every instrument is a
function of sums over samples, so each process reduces its local batch to sums, the sums are added
across processes, and the quantities are computed from the global sums, equal to those of one
process over the concatenated batch:

==========================  ==============================================  =====================
statistic                   contribution of process r                       quantities
==========================  ==============================================  =====================
batch size                  ``b_r``, ``b_r^2`` (``P sum b^2 = (sum b)^2``   all
                            iff the local batches are equal)
loss                        ``b_r L_r``; moments of ``l_n`` (Alpha)         Loss, CABS, Alpha
``sum_n ||g_n,p||^2``       per parameter                                   NormTest, OrthoTest,
                                                                            CABS, TICTrace
``sum_n (g_n^T g_B)^2``     with the *global* ``g_B`` (DDP's averaged       InnerTest, OrthoTest
                            gradient), from the kept layer inputs/outputs
``sum_n (g_n - g_B)^2``     ``sum_{n in r} (g_n - g_r)^2 + b_r (g_r -       MeanGSNR,
                            g_B)^2`` element-wise (centred, no              EarlyStopping
                            cancellation)
``sum_n g_n^2``             element-wise                                    TICDiag
histogram counts            counts on the fixed bins (the bin edges are     GradHist1d/2d
                            settings, so every process bins alike: no
                            round trip for ranges)
curvature diagonal          ``b_r diag(H_r)`` (``H_B = sum_r b_r H_r / B``)  HessTrace, TIC*
slope moments (Alpha)       moments of ``s^T g_n`` at both ends             Alpha
==========================  ==============================================  =====================

All of it goes into **one** flat float64 tensor and one ``all_reduce(SUM)`` just before the optimizer
step (the start point of Alpha, known only after the update, rides along with the next step's
reduction, whose record it is). Quantities reading the mini-batch gradient use the one DDP has
already averaged (``param.grad``); a check in the same all-reduce (``sum_r b_r g_r^T g_B`` against
``B ||g_B||^2``) turns them NaN, with the reason, when that gradient is not the mean of the
per-sample gradients (clipping or rescaling between backward and the optimizer step). HessMaxEV's
Hessian-vector products are reduced (``sum_r b_r H_r v / B``), one all-reduce of ``D`` values per
product; every process runs the same solver on the same reduced vectors and a start vector from an
identically seeded generator, so all stop together.

**Policy for uneven local batches.** The reduction is taken on every process at the same steps (the
track schedule counts optimizer steps, which DDP keeps in lock-step), with a layout that depends
only on the settings and the parameter shapes, never on local data, so no process can wait for
another. If the local batch sizes differ at a step (a shorter last batch on some process), DDP's
average is not the global mean: every process sees that in the reduced sizes, and *no records are
written for that step* (one warning); HessMaxEV is not attempted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CockpitError
from .moments import PACKED_SIZE, Moments
from .statistics import GlobalTotals, ParamStats, StepStatistics

__all__ = ["Collective", "detect_collective", "needs_reduction", "reduce_step", "unwrap_model", "weighted_sum"]

#: relative tolerance of the check that DDP's gradient is the mean of the per-sample gradients
GRAD_CHECK_RTOL = 1e-3

HEADER = (
    "ranks",
    "batch",
    "batch_sq",
    "per_sample_problem",
    "diag_problem",
    "eigen_problem",
    "loss_missing",
    "losses_missing",
    "end_missing",
    "start_missing",
    "grad_dot",
)

ANOTHER = "on another process: "


def unwrap_model(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """``(module, ddp)``: the model inside a ``DistributedDataParallel`` wrapper, and the wrapper (or None)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        return model.module, model
    return model, None


@dataclass
class Collective:
    """One process group: this process's rank, the number of processes, and counted all-reduces."""

    group: Any
    rank: int
    world_size: int
    #: all-reduce calls made so far, and the bytes they carried (per process)
    calls: int = 0
    bytes: int = 0

    def all_reduce(self, flat: Tensor) -> Tensor:
        """Sum ``flat`` over all processes, in place; every process gets the same result."""
        import torch.distributed as dist

        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        self.calls += 1
        self.bytes += flat.numel() * flat.element_size()
        return flat


def detect_collective(ddp: nn.Module | None, distributed: bool | None) -> Collective | None:
    """The process group the instruments reduce over, or None for a single-process run.

    ``distributed=None`` (default): data-parallel when the model is wrapped in
    ``DistributedDataParallel`` and its process group has more than one process. ``True``: reduce
    over the DDP model's group, else the default group (the loop averages gradients itself);
    ``False``: every process measures its own local batch.
    """
    if distributed is False:
        return None
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if not ready:
        if distributed:
            raise CockpitError(
                "distributed=True needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group) before attach()"
            )
        return None
    group = getattr(ddp, "process_group", None) if ddp is not None else None
    if distributed is None and ddp is None:
        return None
    world = dist.get_world_size(group)
    if world == 1:
        return None
    return Collective(group, dist.get_rank(group), world)


def needs_reduction(stats: StepStatistics) -> bool:
    """Whether the quantities due at this step read anything summed over samples."""
    n = stats.needs
    return n.losses or n.per_sample or n.end_slopes or n.curvature


# ---------------------------------------------------------------------------------------- packing
@dataclass
class _Packer:
    """Named pieces of one flat float64 tensor (a fixed layout: the same on every process)."""

    device: torch.device
    keys: list[tuple[str, int]] = field(default_factory=list)
    parts: list[Tensor] = field(default_factory=list)

    def add(self, key: str, value: Tensor | Sequence[float] | None, size: int) -> None:
        if value is None:
            t = torch.zeros(size, dtype=torch.float64, device=self.device)
        elif isinstance(value, Tensor):
            t = value.detach().reshape(-1).to(device=self.device, dtype=torch.float64)
        else:
            t = torch.tensor(list(value), dtype=torch.float64, device=self.device)
        if t.numel() != size:
            raise RuntimeError(f"statistic {key!r} has {t.numel()} values, the layout expects {size}")
        self.keys.append((key, size))
        self.parts.append(t)

    def reduce(self, collective: Collective) -> dict[str, Tensor]:
        flat = collective.all_reduce(torch.cat(self.parts))
        out, at = {}, 0
        for key, size in self.keys:
            out[key] = flat[at : at + size]
            at += size
        return out


def _moments(m: Moments | None) -> list[float] | None:
    return m.packed() if m is not None else None


# ---------------------------------------------------------------------------------------- one step
@dataclass
class _Local:
    """What this process knows before the reduction: its batch size and its own problems."""

    batch: float
    per_sample_problem: str | None
    diag_problem: str | None
    eigen_problem: str | None


def _local_state(stats: StepStatistics) -> _Local:
    needs = stats.needs
    batch = stats.batch_size
    if batch is None and stats.individual_losses is not None:
        batch = int(stats.individual_losses.shape[0])
    diag_problem = None
    if needs.diagonals:
        diag_problem = stats.curvature_problems.get("diagonals") or (
            None if stats.diagonals else "no curvature diagonal was computed"
        )
    return _Local(
        batch=float(batch or 0),
        per_sample_problem=stats.per_sample_problem() if needs.per_sample else None,
        diag_problem=diag_problem,
        eigen_problem=stats.curvature_problems.get("eigen") if needs.max_ev is not None else None,
    )


def reduce_step(
    stats: StepStatistics,
    collective: Collective,
    params: Mapping[str, nn.Parameter],
    grads: Mapping[str, Tensor],
    carry: tuple[Moments, Moments] | None,
    diagnostics: Mapping[str, float] | None = None,
) -> dict[str, list[float]]:
    """Replace this step's local statistics by those of the global batch (one all-reduce).

    ``grads`` is the averaged gradient ``g_B`` per parameter (DDP's ``param.grad``); ``carry`` the
    local moments of Alpha's start point from the previous step; ``diagnostics`` local values to
    gather per process (returned as ``{name: [value of rank 0, rank 1, ...]}``).
    """
    local = _local_state(stats)
    g64 = {n: grads[n].detach().reshape(-1).to(torch.float64) for n in params}
    pack = _Packer(next(iter(params.values())).device)
    _pack_header(pack, stats, local, g64, carry)
    _pack_losses_and_slopes(pack, stats, local, carry)
    if stats.needs.per_sample:
        _pack_per_sample(pack, stats, local, params, g64)
    _pack_diagonals(pack, stats, local, params)
    keys = sorted(diagnostics or {})
    for key in keys:
        slots = [0.0] * collective.world_size
        slots[collective.rank] = float((diagnostics or {})[key])
        pack.add(f"rank/{key}", slots, collective.world_size)

    red = pack.reduce(collective)
    _apply(stats, red, local, params, g64, collective.world_size)
    return {key: red[f"rank/{key}"].tolist() for key in keys}


def _pack_header(
    pack: _Packer,
    stats: StepStatistics,
    local: _Local,
    g64: Mapping[str, Tensor],
    carry: tuple[Moments, Moments] | None,
) -> None:
    """Batch sizes, problem flags (counted over processes) and the gradient check, in ``HEADER`` order."""
    needs = stats.needs
    b = local.batch
    # values stay on the device until the one all-reduce: no host sync per tensor
    grad_dot: Tensor | float = 0.0
    if needs.per_sample and local.per_sample_problem is None:
        grad_dot = b * sum(torch.dot(_f64(stats.params[n].batch_grad), g64[n]) for n in stats.params)
    header: dict[str, Tensor | float] = {
        "ranks": 1.0,
        "batch": b,
        "batch_sq": b * b,
        "per_sample_problem": float(local.per_sample_problem is not None),
        "diag_problem": float(local.diag_problem is not None),
        "eigen_problem": float(local.eigen_problem is not None),
        "loss_missing": float(needs.losses and stats.loss is None),
        "losses_missing": float(needs.losses and stats.individual_losses is None),
        "end_missing": float(needs.end_slopes and stats.end_slopes is None),
        "start_missing": float(needs.end_slopes and carry is None),
        "grad_dot": grad_dot,
    }
    values = [torch.as_tensor(header[k], dtype=torch.float64).to(pack.device) for k in HEADER]
    pack.add("header", torch.stack(values), len(HEADER))


def _pack_losses_and_slopes(
    pack: _Packer, stats: StepStatistics, local: _Local, carry: tuple[Moments, Moments] | None
) -> None:
    """The loss and the moments Alpha reads (individual losses, slopes at both ends)."""
    needs = stats.needs
    if needs.losses:
        pack.add("loss", local.batch * stats.loss.detach() if stats.loss is not None else None, 1)
        pack.add("losses", _moments(stats.loss_moments()), PACKED_SIZE)
    if needs.end_slopes:
        pack.add("end", _moments(stats.end_slope_moments()), PACKED_SIZE)
        pack.add("start_losses", carry[0].packed() if carry else None, PACKED_SIZE)
        pack.add("start_slopes", carry[1].packed() if carry else None, PACKED_SIZE)


def _pack_per_sample(
    pack: _Packer,
    stats: StepStatistics,
    local: _Local,
    params: Mapping[str, nn.Parameter],
    g64: Mapping[str, Tensor],
) -> None:
    """Norms, dot products with the averaged ``g_B``, element-wise sums and histogram counts."""
    needs = stats.needs
    names = list(params)
    ok = local.per_sample_problem is None
    own = stats.params
    if needs.sample_sq_norms or needs.centered_sq:
        sq = torch.stack([_f64(own[n].sample_sq_norms).sum() for n in names]) if ok else None
        pack.add("sq_norms", sq, len(names))
    if needs.sample_dots:
        dots: Tensor | None = None
        if ok:
            current = {n: p.detach() for n, p in params.items()}
            slopes = stats.slopes({n: g.view(params[n].shape).to(params[n].dtype) for n, g in g64.items()}, current)
            if slopes is not None:
                d = slopes.to(torch.float64)
                dots = torch.stack([d.square().sum(), d.sum()])
        pack.add("dots", dots, 2)
    for n in names:
        st = own.get(n) if ok else None
        size = params[n].numel()
        if needs.centered_sq_elementwise:
            value = None
            if st is not None:
                shift = _f64(st.batch_grad) - g64[n]
                value = _f64(st.centered_sq) + local.batch * shift * shift
            pack.add(f"centered/{n}", value, size)
        if needs.second_moment:
            pack.add(f"second/{n}", None if st is None else st.second_moment, size)
        if needs.hist is not None:
            value = None if st is None else torch.cat([st.hist.reshape(-1), st.hist_extra.reshape(-1)])
            pack.add(f"hist/{n}", value, needs.hist.bins + 3)
        if needs.hist2d is not None:
            value = None if st is None else torch.cat([st.hist2d.reshape(-1), st.hist2d_extra.reshape(-1)])
            pack.add(f"hist2d/{n}", value, needs.hist2d.x.bins * needs.hist2d.y.bins + 5)


def _pack_diagonals(pack: _Packer, stats: StepStatistics, local: _Local, params: Mapping[str, nn.Parameter]) -> None:
    """``b_r diag(H_r)`` per curvature kind and parameter."""
    for kind in sorted(stats.needs.diagonals, key=str):
        diag = stats.diagonals.get(kind, {}) if local.diag_problem is None else {}
        for n, p in params.items():
            d = diag.get(n)
            pack.add(f"diag/{kind}/{n}", None if d is None else _f64(d) * local.batch, p.numel())


def _apply(
    stats: StepStatistics,
    red: dict[str, Tensor],
    local: _Local,
    params: Mapping[str, nn.Parameter],
    g64: dict[str, Tensor],
    world: int,
) -> None:
    """Put the global sums in place of the local statistics (and the problems of any process)."""
    needs = stats.needs
    head = dict(zip(HEADER, red["header"].tolist()))
    total = head["batch"]
    batch = int(round(total))
    totals = stats.totals = GlobalTotals(batch_size=batch, local_batch=int(local.batch))
    stats.batch_size = batch
    stats._network.clear()
    if batch and abs(world * head["batch_sq"] - total * total) > 0.5:
        stats.skip_reason = (
            f"the local batch sizes differ across the {world} processes at this step (global batch {batch}), "
            "so DDP's averaged gradient is not the global mean; no readings are written for such steps"
        )
    if needs.losses:
        stats.loss = None
        if head["loss_missing"] == 0 and total:
            stats.loss = torch.tensor(float(red["loss"][0]) / total, dtype=torch.float64)
        totals.losses = Moments.from_packed(red["losses"]) if head["losses_missing"] == 0 else None
    if needs.end_slopes:
        totals.end_slopes = Moments.from_packed(red["end"]) if head["end_missing"] == 0 else None
        if head["start_missing"] == 0:
            totals.start = (Moments.from_packed(red["start_losses"]), Moments.from_packed(red["start_slopes"]))
    if needs.per_sample:
        if head["per_sample_problem"] > 0:
            stats.problem = local.per_sample_problem or ANOTHER + "its per-sample statistics are unusable at this step"
        else:
            _apply_per_sample(stats, red, list(params), g64, params, head, total)
    for kind in sorted(needs.diagonals, key=str):
        if head["diag_problem"] > 0:
            stats.curvature_problems["diagonals"] = local.diag_problem or ANOTHER + "its curvature diagonal failed"
            stats.diagonals = {}
            break
        stats.diagonals[kind] = {n: (red[f"diag/{kind}/{n}"] / total).reshape(p.shape) for n, p in params.items()}
    if needs.max_ev is not None and head["eigen_problem"] > 0:
        stats.curvature_problems["eigen"] = local.eigen_problem or ANOTHER + "the batch of this step was not captured"


def _apply_per_sample(
    stats: StepStatistics,
    red: dict[str, Tensor],
    names: list[str],
    g64: dict[str, Tensor],
    params: Mapping[str, nn.Parameter],
    head: dict[str, float],
    total: float,
) -> None:
    needs = stats.needs
    totals = stats.totals
    assert totals is not None
    grad_sq = float(sum(v.square().sum() for v in g64.values()))
    if abs(head["grad_dot"] - total * grad_sq) > GRAD_CHECK_RTOL * max(total * grad_sq, 1e-300):
        stats.problem = (
            "the averaged gradient before the optimizer step is not the mean of the per-sample gradients "
            "(gradients clipped or rescaled between backward and step?)"
        )
        return
    if "sq_norms" in red:
        totals.sq_norms = dict(zip(names, red["sq_norms"].tolist()))
    if "dots" in red:
        totals.dot_sq = float(red["dots"][0])
    local = stats.params
    for n in names:
        st = local.setdefault(n, ParamStats())
        st.batch_grad = g64[n]
        if needs.centered_sq_elementwise:
            st.centered_sq = red[f"centered/{n}"]
        if needs.second_moment:
            st.second_moment = red[f"second/{n}"]
        if needs.hist is not None:
            counts = red[f"hist/{n}"].round().to(torch.int64)
            st.hist, st.hist_extra = counts[:-3], counts[-3:]
        if needs.hist2d is not None:
            nx, ny = needs.hist2d.x.bins, needs.hist2d.y.bins
            counts = red[f"hist2d/{n}"].round().to(torch.int64)
            st.hist2d, st.hist2d_extra = counts[:-5].reshape(nx, ny), counts[-5:]


def weighted_sum(collective: Collective, weight: float) -> Callable[[Tensor], Tensor]:
    """``v -> sum_r weight_r v_r`` over processes (HessMaxEV's reduced Hessian-vector products).

    The caller turns a local failure into NaNs before combining, so every process's solver sees the
    same NaN and stops at the same product.
    """

    def combine(v: Tensor) -> Tensor:
        return collective.all_reduce((v * weight).contiguous())

    return combine


def _f64(t: Tensor | None) -> Tensor:
    if t is None:
        raise KeyError("statistic missing")
    return t.detach().reshape(-1).to(torch.float64)


