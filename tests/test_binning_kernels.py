"""The search kernels of the outer-product histogram against direct counting (numpy): edge counts by
arithmetic, searches answered from the gap around zero, and outer counts on ReLU-like inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cockpit_log import binning


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("low,high,bins", [(-1.0, 1.0, 100), (-0.01, 0.02, 7), (0.1, 0.3, 1), (-3.0, -1.0, 1000)])
def test_edge_counts_equal_the_edges_not_above(dtype: torch.dtype, low: float, high: float, bins: int) -> None:
    gen = np.random.default_rng(bins)
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64).to(dtype)
    width = high - low
    v = np.concatenate(
        [
            gen.uniform(low - width, high + width, 5000),
            edges.numpy().astype(np.float64),  # exactly on the edges
            np.nextafter(edges.numpy(), np.inf).astype(np.float64),  # one ulp either side
            np.nextafter(edges.numpy(), -np.inf).astype(np.float64),
            [0.0, -0.0, np.inf, -np.inf, 1e30, -1e30],
        ]
    )
    values = torch.from_numpy(v).to(dtype)
    expected = (edges.numpy()[None, :] <= values.numpy()[:, None]).sum(1)  # independent: direct comparison
    np.testing.assert_array_equal(binning.edge_counts(edges, values, low, high).numpy(), expected)


def _relu_like(gen: np.random.Generator, batch: int, width: int) -> torch.Tensor:
    a = np.maximum(gen.standard_normal((batch, width)), 0.0)
    a[:, :3] = [0.0, -0.0, 1e-30]  # zeros of both signs and a value next to zero
    a[0, :] = 0.0  # a row of zeros only
    if batch > 1:
        a[1, :] = -np.abs(a[1, :]) - 1e-3  # a row of negatives only
    return torch.from_numpy(a.astype(np.float32))


def test_sorted_row_searches_equal_direct_counts() -> None:
    gen = np.random.default_rng(0)
    a = _relu_like(gen, 6, 50)
    rows = binning._SortedRows(a)
    sample = torch.from_numpy(np.sort(gen.integers(0, 6, 4000)))
    thresholds = np.concatenate([gen.standard_normal(1000), gen.standard_normal(1000) * 1e-35, np.zeros(1000)])
    thresholds = np.concatenate([thresholds, -np.zeros(1000)]).astype(np.float32)
    values = torch.from_numpy(gen.permutation(thresholds))
    strict = torch.from_numpy(gen.integers(0, 2, 4000).astype(bool))
    an, vn = a.numpy()[sample.numpy()], values.numpy()[:, None]
    expected = np.where(strict.numpy(), (an < vn).sum(1), (an <= vn).sum(1))
    np.testing.assert_array_equal(rows.below(sample, values, strict).numpy(), expected)
    np.testing.assert_array_equal(rows.search(sample, values, right=True).numpy(), (an <= vn).sum(1))


@pytest.mark.parametrize("seed", range(6))
def test_outer_counts_on_relu_inputs_match_numpy(seed: int) -> None:
    gen = np.random.default_rng(seed)
    batch, rows, width = 8, 120, 100
    a = _relu_like(gen, batch, width)
    d = torch.from_numpy((gen.standard_normal((batch, rows)) * 10 ** gen.uniform(-3, -2)).astype(np.float32))
    d[0, :2] = torch.tensor([0.0, -0.0])
    low, high, bins = (-1.0, 1.0, 100) if seed % 2 else (-0.01, 0.02, 7)
    result = binning.outer_counts(d, a, low, high, bins)
    assert result is not None
    x = (d[:, :, None] * a[:, None, :]).reshape(-1).numpy()
    # an independent count of the threshold rule the outer path follows: x_nik below edge e <=> a_nk < e / d_ni
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64).float().numpy()
    dn, an = d.numpy()[:, :, None, None], a.numpy()[:, None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = edges[None, None, None, :] / dn
    ge = np.where(dn > 0, an >= t, np.where(dn < 0, an <= t, edges <= 0.0))  # x >= edge, per element and edge
    cats = ge.sum(-1).reshape(-1)
    expected = np.bincount(cats, minlength=bins + 3)
    counts, above = result
    np.testing.assert_array_equal(counts.numpy(), expected)
    assert int(above) == int((x > high).sum())


def test_categories_in_reused_buffers_equal_fresh_ones_and_match_numpy() -> None:
    gen = np.random.default_rng(7)
    for size in (1000, 300, 5000):  # the buffers shrink and grow between calls
        x = torch.from_numpy((gen.standard_normal(size) * 2).astype(np.float32))
        x[:3] = torch.tensor([float("nan"), 1.0, -1.0])
        fresh = binning.dense_categories(x, -1.0, 1.0, 100)
        reused = binning.dense_categories(x, -1.0, 1.0, 100, reuse=True)
        assert torch.equal(fresh, reused)
        above = binning.count_above(x, 0.5, reuse=True)
        assert int(above) == int(np.nansum(x.numpy() > 0.5))
        counts = torch.bincount(reused, minlength=103)
        hist, extra = binning.fold(counts, binning.count_above(x, 1.0), 100)
        finite = x.numpy()[~np.isnan(x.numpy())]
        expected = np.histogram(np.clip(finite, -1.0, 1.0), np.linspace(-1.0, 1.0, 101))[0]
        np.testing.assert_array_equal(hist.numpy(), expected)
        assert extra.tolist() == [int((finite < -1).sum()), int((finite > 1).sum()), 1]
