"""One layer's per-sample gradients reduced to the step statistics, inside its backward hook.

What is computed (``g_n`` a sample's gradient of one parameter, ``B`` samples, ``g_B`` their mean):

==========================  =============================================================
``batch_grad``              ``g_B``
``sample_sq_norms``         ``||g_n||^2`` per sample
``sample_dots``             ``g_n^T g_B`` per sample
``second_moment``           ``sum_n g_n^2`` per element
``centered``                ``sum_n (g_n - g_B)^2`` per element (exact, from the elements)
``hist`` / ``hist2d``       category counts of the ``B * D`` elements (:mod:`cockpit_log.binning`)
==========================  =============================================================

``nn.Linear`` on ``[B, I]`` inputs (the bulk of most networks' parameters) needs no per-sample
gradient at all: with ``g_n = d_n a_n^T`` (``d_n`` the scaled output gradient, ``a_n`` the input),
``||g_n||^2 = ||d_n||^2 ||a_n||^2``, ``g_n^T g_B = (d_n^T G_B) a_n`` and ``sum_n g_n^2 =
(d^2)^T (a^2)``; its histogram comes from binary searches over the sorted inputs (CPU) or from the
dense pass over blocks of samples. Every other layer forms its per-sample gradients for a bounded
block of samples at a time (``torch.func``), and all statistics of a block are taken in one pass
before the next block is formed. Nothing per-sample outlives the layer's hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from . import binning
from .per_sample import conv_batch_grads, internal_call, layer_per_sample_grads, plain_conv

__all__ = ["BLOCK_ELEMENTS", "LayerRequest", "ParamResult", "reduce_layer"]

#: per-sample gradient elements formed at once (a block of samples of one layer)
BLOCK_ELEMENTS = 1 << 22
#: elements binned at once: small enough for the passes of the binning to stay in cache
BIN_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class LayerRequest:
    """Which statistics to compute, and the histogram bins as ``(low, high, bins)``."""

    norms: bool = False
    dots: bool = False
    second_moment: bool = False
    centered: bool = False
    hist: tuple[float, float, int] | None = None
    hist2d_x: tuple[float, float, int] | None = None
    hist2d_y: tuple[float, float, int] | None = None

    @property
    def elements(self) -> bool:
        """Whether anything needs the individual elements (histograms or exact centred squares)."""
        return self.centered or self.hist is not None or self.hist2d_y is not None


@dataclass
class ParamResult:
    """The statistics of one parameter (see the module docstring); ``None`` where not requested."""

    batch_grad: Tensor
    sample_sq_norms: Tensor | None = None
    sample_dots: Tensor | None = None
    second_moment: Tensor | None = None
    centered: Tensor | None = None
    hist: Tensor | None = None
    hist_extra: Tensor | None = None
    hist2d: Tensor | None = None
    hist2d_extra: Tensor | None = None


class _ElementPass:
    """Accumulates the element-wise statistics of one parameter over blocks of samples."""

    def __init__(self, req: LayerRequest, theta: Tensor, batch_grad: Tensor) -> None:
        self.req = req
        self.gb = batch_grad
        self.centered: Tensor | None = torch.zeros_like(batch_grad) if req.centered else None
        self.hist: Tensor | None = None
        self.above = torch.zeros((), dtype=torch.int64, device=theta.device)
        self.joint: Tensor | None = None
        self.above_y = torch.zeros((), dtype=torch.int64, device=theta.device)
        self.x_idx: Tensor | None = None
        self.x_clip: Tensor | None = None
        self.nest = None
        if req.hist2d_y is not None:
            self.x_idx, self.x_clip = binning.theta_categories(theta.reshape(-1), *req.hist2d_x)  # type: ignore[misc]
            if req.hist is not None:
                self.nest = binning.nested_factor(req.hist, req.hist2d_y)

    def add(self, g: Tensor, hist: bool = True) -> None:
        """One block ``g`` ``[b, D]`` of scaled per-sample gradients; ``hist=False`` skips the 1-D histogram."""
        for blk in _blocks(g.shape[0], g.shape[1], BIN_ELEMENTS):
            self._add(g[blk], hist)

    def _add(self, g: Tensor, hist: bool) -> None:
        req = self.req
        if self.centered is not None:
            c = g - self.gb
            self.centered += (c * c).sum(0)
        fine = None
        if hist and req.hist is not None:
            fine = binning.dense_categories(g, *req.hist, reuse=True)
            counts = torch.bincount(fine.reshape(-1), minlength=req.hist[2] + 3)
            self.hist = counts if self.hist is None else self.hist + counts
            self.above += binning.count_above(g, req.hist[1], reuse=True)
        if req.hist2d_y is not None:
            low, high, ny = req.hist2d_y
            if fine is not None and self.nest is not None:
                y = binning.coarse_categories(fine, req.hist[2], self.nest)  # type: ignore[index]
            else:
                y = binning.dense_categories(g, low, high, ny, reuse=True)
            joint = binning.dense_counts_2d(self.x_idx, y, req.hist2d_x[2], ny)  # type: ignore[arg-type,index]
            self.joint = joint if self.joint is None else self.joint + joint
            self.above_y += binning.count_above(g, high, reuse=True)

    def add_categories(self, counts: Tensor, above: Tensor) -> None:
        """1-D category counts obtained without forming the elements."""
        self.hist = counts if self.hist is None else self.hist + counts
        self.above += above

    def finish(self, out: ParamResult, batch: int) -> None:
        req = self.req
        out.centered = self.centered
        if req.hist is not None and self.hist is not None:
            out.hist, out.hist_extra = binning.fold(self.hist, self.above, req.hist[2])
        if req.hist2d_y is not None and self.joint is not None:
            nx, ny = req.hist2d_x[2], req.hist2d_y[2]  # type: ignore[index]
            out.hist2d, extra = binning.fold_2d(self.joint, self.above_y, nx, ny)
            assert self.x_clip is not None
            out.hist2d_extra = torch.cat([self.x_clip * batch, extra])


def _blocks(batch: int, per_sample: int, elements: int = BLOCK_ELEMENTS) -> Iterator[slice]:
    step = max(1, elements // max(per_sample, 1))
    for start in range(0, batch, step):
        yield slice(start, min(batch, start + step))


def _linear(module: nn.Linear, a: Tensor, d: Tensor, names: list[str], req: LayerRequest) -> dict[str, ParamResult]:
    """Closed forms for ``nn.Linear`` on ``[B, I]`` inputs; ``d`` is the scaled output gradient."""
    batch = d.shape[0]
    out: dict[str, ParamResult] = {}
    d2 = d * d if (req.norms or req.second_moment) else None
    d_sq = d2.sum(1) if d2 is not None and req.norms else None
    if "weight" in names:
        gb = (d.T @ a).div_(batch)
        res = ParamResult(batch_grad=gb.reshape(-1))
        a2 = a * a if (req.norms or req.second_moment) else None
        if req.norms:
            res.sample_sq_norms = d_sq * a2.sum(1)  # type: ignore[operator,union-attr]
        if req.dots:
            res.sample_dots = ((d @ gb) * a).sum(1)
        if req.second_moment:
            res.second_moment = (d2.T @ a2).reshape(-1)  # type: ignore[union-attr]
        if req.elements:
            acc = _ElementPass(req, module.weight.detach(), res.batch_grad)
            quick = None
            if req.hist is not None and a.device.type == "cpu":
                quick = binning.outer_counts(d, a, *req.hist)
                if quick is not None:
                    acc.add_categories(*quick)
            if req.centered or req.hist2d_y is not None or (req.hist is not None and quick is None):
                dtype = torch.promote_types(d.dtype, a.dtype)
                reuse = d.shape[1] * a.shape[1] <= BIN_ELEMENTS
                for blk in _blocks(batch, d.shape[1] * a.shape[1], BIN_ELEMENTS):
                    rows = blk.stop - blk.start
                    shape = (rows, d.shape[1], a.shape[1])
                    # a reused buffer unless one sample alone is larger than a bin block
                    outer = (
                        binning.scratch("outer", shape, dtype, d.device) if reuse else d.new_empty(shape, dtype=dtype)
                    )
                    g = torch.mul(d[blk].unsqueeze(2), a[blk].unsqueeze(1), out=outer).view(rows, -1)
                    acc.add(g, hist=quick is None)
                    del g
            acc.finish(res, batch)
        out["weight"] = res
    if "bias" in names and module.bias is not None:
        res = ParamResult(batch_grad=d.mean(0))
        if req.norms:
            res.sample_sq_norms = d_sq
        if req.dots:
            res.sample_dots = d @ res.batch_grad
        if req.second_moment:
            res.second_moment = d2.sum(0)  # type: ignore[union-attr]
        if req.elements:
            acc = _ElementPass(req, module.bias.detach(), res.batch_grad)
            acc.add(d)
            acc.finish(res, batch)
        out["bias"] = res
    return out


def _batch_grads(module: nn.Module, inputs: tuple[Tensor, ...], delta: Tensor, names: list[str]) -> dict[str, Tensor]:
    """``sum_n J_n^T delta_n`` for the layer's parameters ``names``: one backward pass of the layer alone."""
    if plain_conv(module, inputs):
        return conv_batch_grads(module, inputs[0], delta, names)
    own = dict(module.named_parameters(recurse=False))
    params = {n: own[n].detach().requires_grad_() for n in names}
    rest = {n: p.detach() for n, p in own.items() if n not in names}
    buffers = dict(module.named_buffers(recurse=False))
    with internal_call(), torch.enable_grad():
        out = functional_call(module, {**params, **rest, **buffers}, inputs)
        grads = torch.autograd.grad(out, list(params.values()), delta, allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(params[n])).detach() for n, g in zip(names, grads)}


def _generic(
    module: nn.Module, inputs: tuple[Tensor, ...], d: Tensor, names: list[str], req: LayerRequest
) -> dict[str, ParamResult]:
    """Any layer: per-sample gradients formed block by block, every statistic taken in one pass per block."""
    batch = d.shape[0]
    own = dict(module.named_parameters(recurse=False))
    sums = _batch_grads(module, inputs, d, names)
    results = {n: ParamResult(batch_grad=sums[n].reshape(-1).div_(batch)) for n in names}
    passes = {n: _ElementPass(req, own[n].detach(), results[n].batch_grad) for n in names} if req.elements else {}
    norms: dict[str, list[Tensor]] = {n: [] for n in names}
    dots: dict[str, list[Tensor]] = {n: [] for n in names}
    width = sum(own[n].numel() for n in names)
    for blk in _blocks(batch, width):
        grads = layer_per_sample_grads(module, tuple(x[blk] for x in inputs), d[blk], names)
        for n in names:
            g = grads.pop(n).reshape(blk.stop - blk.start, -1)
            res = results[n]
            sq = g * g if (req.norms or req.second_moment) else None
            if req.norms:
                norms[n].append(sq.sum(1))  # type: ignore[union-attr]
            if req.second_moment:
                s = sq.sum(0)  # type: ignore[union-attr]
                res.second_moment = s if res.second_moment is None else res.second_moment + s
            if req.dots:
                dots[n].append(g @ res.batch_grad)
            if n in passes:
                passes[n].add(g)
            del g, sq
    for n in names:
        if req.norms:
            results[n].sample_sq_norms = torch.cat(norms[n])
        if req.dots:
            results[n].sample_dots = torch.cat(dots[n])
        if n in passes:
            passes[n].finish(results[n], batch)
    return results


def reduce_layer(
    module: nn.Module, inputs: tuple[Tensor, ...], delta: Tensor, names: list[str], scale: float, req: LayerRequest
) -> dict[str, ParamResult]:
    """Statistics of the layer's parameters ``names`` (local names) from its inputs and output gradient.

    ``scale`` turns the gradient of a sample's loss share into ``g_n`` (see
    :mod:`cockpit_log.individual_losses`); all inputs must carry the batch in their first dimension.
    """
    d = delta * scale
    if type(module) is nn.Linear and len(inputs) == 1 and inputs[0].dim() == 2:
        return _linear(module, inputs[0], d, names, req)
    return _generic(module, inputs, d, names, req)
