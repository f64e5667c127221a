"""Histogram counts of per-sample gradient elements: one fused pass over blocks, or none for outer products.

Bins follow one rule everywhere: ``bins`` equal bins on ``[low, high]``, half-open ``[e_j, e_{j+1})``
with the last one closed; values below ``low`` / above ``high`` are counted in the first / last bin
and reported as ``below`` / ``above``; NaNs are counted in ``nonfinite`` only. A value within
rounding error of an edge may land in the neighbouring bin.

Internally every value gets a *category*: ``0`` below ``low``, ``1..bins`` the bins, ``bins + 1``
at or above ``high`` (``high`` itself and everything above: split later into the last bin and
``above``), ``bins + 2`` NaN. Counts are exact integers.

- :func:`dense_counts`: one pass over a block of values (``x * c + off``, clamp, one ``bincount``);
  the caller hands blocks of a bounded number of samples, so memory stays bounded.
- :func:`outer_counts`: the elements of ``nn.Linear``'s per-sample weight gradients are outer
  products ``g_n[i, k] = d_n[i] a_n[k]``. Each row ``(n, i)`` is monotone in ``a_n`` once ``a_n`` is
  sorted, so its counts follow from the row's range (``d_n[i] * [min a_n, max a_n]``) and one binary
  search per bin edge *inside* that range: almost every row of a real network lies within one or
  two bins, so this costs ``O(B * (I log I + O))`` instead of ``O(B * O * I)``. CPU only (the number
  of edges is data-dependent); the dense pass is used on accelerators and for non-finite inputs.
- :func:`dense_counts_2d`: joint categories of (parameter, gradient) pairs for GradHist2d, sharing
  the gradient categories of the 1-D histogram when the bins nest (see :func:`nested_factor`).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "coarse_categories",
    "count_above",
    "dense_categories",
    "dense_counts",
    "dense_counts_2d",
    "fold",
    "fold_2d",
    "nested_factor",
    "outer_counts",
    "scratch",
    "theta_categories",
]


def _scale(low: float, high: float, bins: int) -> tuple[float, float]:
    c = bins / (high - low)
    return c, -low * c


_scratch_state = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A reused work buffer of ``shape`` and ``dtype``, one per name and thread.

    Fresh large buffers cost page faults on every step; the binning passes write their intermediates
    here instead. The contents are valid until the next request of the same name in the same thread.
    """
    store: dict[str, Tensor] = _scratch_state.__dict__.setdefault("buffers", {})
    n = math.prod(shape)
    buf = store.get(name)
    if buf is None or buf.dtype != dtype or buf.device != device or buf.numel() < n:
        buf = torch.empty(max(n, 1), dtype=dtype, device=device)
        store[name] = buf
    return buf[:n].view(shape)


def dense_categories(x: Tensor, low: float, high: float, bins: int, reuse: bool = False) -> Tensor:
    """Category (see the module docstring) of every value of ``x``, as int32 of ``x``'s shape.

    ``reuse=True`` writes into this thread's work buffers (see :func:`scratch`): the result is valid
    until the next such call.
    """
    c, off = _scale(low, high, bins)
    if not reuse:
        v = torch.mul(x, c).add_(off).clamp_(-1, bins).add_(1)
        return torch.nan_to_num_(v, nan=float(bins + 2)).to(torch.int32)
    v = torch.mul(x, c, out=scratch("values", x.shape, x.dtype, x.device)).add_(off).clamp_(-1, bins).add_(1)
    torch.nan_to_num_(v, nan=float(bins + 2))
    return scratch("categories", x.shape, torch.int32, x.device).copy_(v)  # the same truncating cast as ``.to``


def count_above(x: Tensor, high: float, reuse: bool = False) -> Tensor:
    """``#(x > high)``; on CPU the comparison pass runs only when some value reaches ``high`` (or is NaN).

    ``reuse=True`` writes the comparison into a work buffer (see :func:`scratch`).
    """
    if x.device.type == "cpu" and x.numel():
        top = x.max()  # NaN if any value is NaN
        if bool(top < high):
            return torch.zeros((), dtype=torch.int64)
    if reuse:
        return torch.count_nonzero(torch.gt(x, high, out=scratch("above", x.shape, torch.bool, x.device)))
    return torch.count_nonzero(x > high)


def fold(categories: Tensor, above: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Category counts ``[bins + 3]`` -> bin counts ``[bins]`` (clipped values in the edge bins) and
    ``[below, above, nonfinite]``."""
    counts = categories[1 : bins + 1].clone()
    counts[0] += categories[0]
    counts[bins - 1] += categories[bins + 1]
    return counts, torch.stack([categories[0], above.to(torch.int64), categories[bins + 2]])


def dense_counts(x: Tensor, low: float, high: float, bins: int) -> tuple[Tensor, Tensor]:
    """Category counts ``[bins + 3]`` of the values of ``x`` (one pass) and ``#(x > high)``."""
    cats = dense_categories(x, low, high, bins)
    return torch.bincount(cats.reshape(-1), minlength=bins + 3), count_above(x, high)


def nested_factor(fine: tuple[float, float, int], coarse: tuple[float, float, int]) -> int | None:
    """``m`` if the coarse bins are the fine ones merged ``m`` at a time (``m`` a power of two, same range).

    Then ``floor((x * c + off) / m)`` is exact (scaling by a power of two is), so the coarse
    categories follow from the fine ones by an integer division.
    """
    if fine[:2] != coarse[:2] or fine[2] % coarse[2]:
        return None
    m = fine[2] // coarse[2]
    return m if m & (m - 1) == 0 else None


def coarse_categories(fine: Tensor, fine_bins: int, m: int) -> Tensor:
    """Coarse categories from fine ones (bins merged ``m`` at a time), NaN kept as NaN."""
    coarse_bins = fine_bins // m
    out = torch.div(fine - 1, m, rounding_mode="floor").add_(1)
    return torch.where(fine == fine_bins + 2, coarse_bins + 2, out).to(torch.int32)


def theta_categories(theta: Tensor, low: float, high: float, bins: int) -> tuple[Tensor, Tensor]:
    """Bin of each parameter value for GradHist2d (clipped; NaN -> ``bins``) and ``[below, above]``."""
    c, off = _scale(low, high, bins)
    v = torch.mul(theta, c).add_(off).clamp_(0, bins - 1)
    idx = torch.nan_to_num_(v, nan=float(bins)).to(torch.int64)
    return idx, torch.stack([(theta < low).sum(), (theta > high).sum()])


def dense_counts_2d(x_idx: Tensor, y_cats: Tensor, x_bins: int, y_bins: int) -> Tensor:
    """Joint counts ``[x_bins + 1, y_bins + 3]`` of parameter bins (``x_bins``: NaN) and gradient categories.

    ``x_idx`` has shape ``[D]``, ``y_cats`` shape ``[b, D]``.
    """
    combined = x_idx.to(torch.int32).mul(y_bins + 3).unsqueeze(0) + y_cats
    return torch.bincount(combined.reshape(-1), minlength=(x_bins + 1) * (y_bins + 3)).view(x_bins + 1, y_bins + 3)


def fold_2d(joint: Tensor, above: Tensor, x_bins: int, y_bins: int) -> tuple[Tensor, Tensor]:
    """Joint category counts -> ``counts [x_bins, y_bins]`` and ``[y_below, y_above, nonfinite]``.

    The parameter-side clip counts are added by the caller (they do not depend on the samples).
    """
    regular = joint[:x_bins]
    counts = regular[:, 1 : y_bins + 1].clone()
    counts[:, 0] += regular[:, 0]
    counts[:, y_bins - 1] += regular[:, y_bins + 1]
    nonfinite = joint[x_bins].sum() + regular[:, y_bins + 2].sum()
    y_below = joint[:, 0].sum()
    return counts, torch.stack([y_below, above.to(torch.int64), nonfinite])


def _per_sample_search(sorted_a: Tensor, sample: Tensor, values: Tensor, right: bool) -> Tensor:
    """``searchsorted(sorted_a[sample[m]], values[m])`` for every ``m`` (``sample`` non-decreasing)."""
    batch = sorted_a.shape[0]
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    per = torch.bincount(sample, minlength=batch)
    start = torch.cumsum(per, 0) - per
    widest = int(per.max())
    if widest * batch > 4 * values.numel() + 4096:  # unbalanced: one search per sample
        out = torch.empty(values.numel(), dtype=torch.int64)
        for n in per.nonzero().squeeze(1).tolist():
            lo, hi = int(start[n]), int(start[n] + per[n])
            out[lo:hi] = torch.searchsorted(sorted_a[n], values[lo:hi], right=right)
        return out
    pos = torch.arange(values.numel()) - start[sample]
    padded = torch.full((batch, widest), float("inf"), dtype=sorted_a.dtype)
    padded[sample, pos] = values
    found = torch.searchsorted(sorted_a, padded, right=right)
    return found[sample, pos]


class _SortedRows:
    """The rows of ``a`` sorted, with what every search near zero needs per row.

    ``neg = #(a < 0)``, ``nonpos = #(a <= 0)``, and the gap ``(largest negative, smallest positive)``
    around zero. A threshold ``t`` strictly inside its row's gap has ``#(a < t)`` and ``#(a <= t)``
    equal to ``neg`` or ``nonpos`` by its sign alone, with no search: the thresholds ``e / d`` of an
    edge ``e`` at (or within rounding of) zero, the bulk of the searches of a ReLU network.
    """

    def __init__(self, a: Tensor) -> None:
        self.values = _sorted_rows(a)
        batch = a.shape[0]
        zero = torch.zeros(batch, 1, dtype=self.values.dtype)
        self.neg = torch.searchsorted(self.values, zero, right=False).squeeze(1)
        self.nonpos = torch.searchsorted(self.values, zero, right=True).squeeze(1)
        inf = torch.full((batch, 1), float("inf"), dtype=self.values.dtype)
        ext = torch.cat([-inf, self.values, inf], 1)  # ext[:, k + 1] = values[:, k]
        self.gap_low = ext.gather(1, self.neg.unsqueeze(1)).squeeze(1)
        self.gap_high = ext.gather(1, (self.nonpos + 1).unsqueeze(1)).squeeze(1)

    def search(self, sample: Tensor, values: Tensor, right: bool) -> Tensor:
        """``#(row < v)`` (``right=False``) or ``#(row <= v)`` (``right=True``) of row ``sample[m]`` for every
        ``values[m]`` (``sample`` non-decreasing)."""
        return self.below(sample, values, torch.full_like(values, not right, dtype=torch.bool))

    def below(self, sample: Tensor, values: Tensor, strict: Tensor) -> Tensor:
        """``#(row < v)`` where ``strict``, else ``#(row <= v)``, of row ``sample[m]`` for every ``values[m]``
        (``sample`` non-decreasing)."""
        if values.numel() == 0:
            return torch.zeros(0, dtype=torch.int64)
        low, high = self.gap_low.index_select(0, sample), self.gap_high.index_select(0, sample)
        inside = (values > low).logical_and_(values < high)
        # inside the gap: a < t  <=>  a <= 0 if t > 0, a < 0 if t <= 0;  a <= t  <=>  a < 0 if t < 0, a <= 0 if t >= 0
        upper = torch.where(strict, values <= 0, values < 0)
        out = torch.where(upper, self.neg.index_select(0, sample), self.nonpos.index_select(0, sample))
        if not bool(inside.all()):
            rest = (~inside).nonzero().squeeze(1)
            r_strict = strict.index_select(0, rest)
            r_sample, r_values = sample.index_select(0, rest), values.index_select(0, rest)
            for flag in (True, False):
                sel = (r_strict == flag).nonzero().squeeze(1)
                if sel.numel():
                    found = _per_sample_search(
                        self.values, r_sample.index_select(0, sel), r_values.index_select(0, sel), right=not flag
                    )
                    out.index_copy_(0, rest.index_select(0, sel), found)
        return out


def edge_counts(edges: Tensor, v: Tensor, low: float, high: float) -> Tensor:
    """``searchsorted(edges, v, right=True)`` (the number of edges ``<= v``) for equal bins ``edges`` of
    ``[low, high]`` (possibly rounded to a lower precision), from the bin arithmetic checked against the
    edges themselves: exact, and without a binary search per value."""
    bins = edges.numel() - 1
    est = torch.sub(v, low).mul_(bins / (high - low)).floor_().add_(1)  # within one of the answer
    k = torch.nan_to_num_(est.clamp_(0, bins + 1), nan=float(bins + 1)).to(torch.int64)
    nan = torch.full((1,), float("nan"), dtype=edges.dtype)  # compares false: k stays within 0..bins + 1
    ext = torch.cat([nan, edges, nan])  # ext[k] = edges[k - 1]: k is right when ext[k] <= v < ext[k + 1]
    for _ in range(4):
        down = ext.index_select(0, k) > v
        up = ext.index_select(0, k + 1) <= v
        if not bool((down | up).any()):
            return k
        k = k - down.to(torch.int64) + up.to(torch.int64)
    return torch.searchsorted(edges, v, right=True)  # not reached for equal bins; NaN lands here too


def _sorted_rows(a: Tensor) -> Tensor:
    """``a`` sorted along its last dimension; numpy's vectorised sort is several times faster than
    ``torch.sort`` on CPU (the values, hence every count, are the same)."""
    if a.dtype in (torch.float32, torch.float64) and not a.requires_grad:
        try:
            return torch.from_numpy(np.sort(a.contiguous().numpy(), axis=-1))
        except (RuntimeError, TypeError):  # a tensor numpy cannot view
            pass
    return torch.sort(a, dim=-1).values.contiguous()


def outer_counts(d: Tensor, a: Tensor, low: float, high: float, bins: int) -> tuple[Tensor, Tensor] | None:
    """Category counts ``[bins + 3]`` and ``#(> high)`` of all ``d[n, i] * a[n, k]`` without forming them.

    ``d`` ``[B, O]``, ``a`` ``[B, I]`` (CPU, finite). Returns None when the binary searches would not
    be cheaper than the dense pass (rows spanning many bins), or for non-finite input.
    """
    batch, width = a.shape
    dtype = torch.promote_types(d.dtype, a.dtype)
    d, a = d.to(dtype), a.to(dtype)
    amin, amax = (t.unsqueeze(1) for t in torch.aminmax(a, dim=1))
    # min and max are NaN or infinite exactly when some value is: one pass each instead of isfinite
    if not bool(torch.isfinite(torch.cat([amin, amax, torch.stack(torch.aminmax(d)).view(-1, 1)])).all()):
        return None
    lo = torch.minimum(d * amin, d * amax)
    hi = torch.maximum(d * amin, d * amax)
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64).to(dtype)
    # category = number of edges e with x >= e (the top edge included): 0 below low, bins + 1 at/above high
    cat_lo = edge_counts(edges, lo.reshape(-1), low, high)
    cat_hi = edge_counts(edges, hi.reshape(-1), low, high)
    spans = cat_hi - cat_lo
    total = int(spans.sum())
    # cost in units of one element of the dense pass (measured on CPU): sorting ~50 per input value,
    # ~20 per row, ~12 per binary search
    if 50 * a.numel() + 20 * d.numel() + 12 * total > d.numel() * width:
        return None
    rows_a = _SortedRows(a)
    counts = torch.bincount(cat_hi, minlength=bins + 3) * width  # each row: all its elements at its top category
    d_flat = d.reshape(-1)
    if total:
        rows = torch.repeat_interleave(torch.arange(d_flat.numel()), spans)
        # boundaries inside each row's range: cat_lo + 1, ..., cat_hi
        offset = (cat_lo + 1).sub_(torch.cumsum(spans, 0) - spans)
        cat = torch.arange(total).add_(offset.index_select(0, rows))
        d_rows = d_flat.index_select(0, rows)
        threshold = edges.index_select(0, cat - 1) / d_rows
        sample = torch.div(rows, d.shape[1], rounding_mode="floor")
        positive = d_rows > 0
        # elements of the row below the boundary: #(a < t) for d > 0, #(a > t) = width - #(a <= t) for d < 0
        found = rows_a.below(sample, threshold, positive)
        below = torch.where(positive, found, width - found)
        counts.index_add_(0, cat - 1, below)
        counts.index_add_(0, cat, -below)
    hi_flat = hi.reshape(-1)
    rows_above = ((hi_flat > high) & (d_flat != 0)).nonzero().squeeze(1)
    above = torch.zeros((), dtype=torch.int64)
    if high < 0:  # rows with d = 0 are all zeros
        above = above + int((d_flat == 0).sum()) * width
    if rows_above.numel():
        dr = d_flat[rows_above]
        sample = torch.div(rows_above, d.shape[1], rounding_mode="floor")
        t = high / dr
        pos = dr > 0
        p, n = pos.nonzero().squeeze(1), (~pos).nonzero().squeeze(1)
        above = (
            above
            + (width - rows_a.search(sample[p], t[p], right=True)).sum()
            + rows_a.search(sample[n], t[n], right=False).sum()
        )
    return counts, above
