"""The fast paths of the statistics against plain references: histogram kernels against numpy,
closed-form convolution gradients and slopes against torch.func, GradHist2d's shared categories."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from reference import per_sample
from torch import nn

import cockpit_log
from cockpit_log import binning
from cockpit_log.per_sample import layer_per_sample_grads, layer_slopes


def numpy_hist(x: np.ndarray, low: float, high: float, bins: int) -> tuple[np.ndarray, list[int]]:
    finite = x[~np.isnan(x)]
    counts = np.histogram(np.clip(finite, low, high), np.linspace(low, high, bins + 1))[0]
    return counts, [int((finite < low).sum()), int((finite > high).sum()), int(np.isnan(x).sum())]


@pytest.mark.parametrize("seed", range(40))
def test_outer_and_dense_counts_match_numpy(seed: int) -> None:
    gen = np.random.default_rng(seed)
    batch, rows, width = gen.integers(1, 6), gen.integers(1, 20), gen.integers(1, 40)
    d = torch.from_numpy(gen.standard_normal((batch, rows)) * 10 ** gen.uniform(-3, 1))
    a = torch.from_numpy(gen.standard_normal((batch, width)))
    d[0, 0] = 0.0  # exact zeros sit on the middle edge
    a[:, 0] = 0.0
    d[-1, -1] = 1.0
    a[-1, -1] = 1.0  # one element exactly at the top edge: last bin, not "above"
    low, high, bins = (-1.0, 1.0, 100) if seed % 2 else (-0.01, 0.02, 7)
    x = (d[:, :, None] * a[:, None, :]).reshape(-1)
    expected, extra = numpy_hist(x.numpy(), low, high, bins)
    counts, above = binning.dense_counts(x, low, high, bins)
    hist, got_extra = binning.fold(counts, above, bins)
    np.testing.assert_array_equal(hist.numpy(), expected)
    assert got_extra.tolist() == extra
    outer = binning.outer_counts(d, a, low, high, bins)
    if outer is not None:
        hist, got_extra = binning.fold(*outer, bins)
        np.testing.assert_array_equal(hist.numpy(), expected)
        assert got_extra.tolist() == extra


def test_outer_counts_is_used_for_small_gradients_and_declines_non_finite_input() -> None:
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(16, 300, generator=gen, dtype=torch.float64) * 1e-3
    a = torch.randn(16, 500, generator=gen, dtype=torch.float64)
    assert binning.outer_counts(d, a, -1.0, 1.0, 100) is not None
    a[3, 7] = float("nan")
    assert binning.outer_counts(d, a, -1.0, 1.0, 100) is None


def test_dense_counts_count_nan_and_infinities() -> None:
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0, -1.0, 0.0, 0.5, 2.0])
    counts, above = binning.dense_counts(x, -1.0, 1.0, 4)
    hist, extra = binning.fold(counts, above, 4)
    assert hist.tolist() == [2, 0, 1, 4] and extra.tolist() == [1, 2, 1]


def test_coarse_categories_follow_from_nested_fine_ones() -> None:
    x = torch.cat([torch.linspace(-1.5, 1.5, 10_001, dtype=torch.float64), torch.tensor([float("nan"), 1.0, -1.0])])
    assert binning.nested_factor((-1.0, 1.0, 100), (-1.0, 1.0, 50)) == 2
    assert binning.nested_factor((-1.0, 1.0, 100), (-1.0, 1.0, 30)) is None
    fine = binning.dense_categories(x, -1.0, 1.0, 100)
    direct = binning.dense_categories(x, -1.0, 1.0, 50)
    assert torch.equal(binning.coarse_categories(fine, 100, 2), direct)


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Conv2d(8, 4, 3), (5, 8, 4, 4)),  # small output map: unfold
        (nn.Conv2d(2, 6, 3, stride=2, padding=1, dilation=1), (5, 2, 9, 9)),  # grouped weight gradient
        (nn.Conv2d(4, 6, 3, groups=2, padding=2, dilation=2), (5, 4, 7, 7)),
        (nn.Conv1d(3, 5, 4, padding=1), (5, 3, 11)),
        (nn.Conv3d(2, 3, 2), (4, 2, 4, 4, 4)),
    ],
)
def test_convolution_closed_forms_match_torch_func(layer: nn.Module, shape: tuple[int, ...]) -> None:
    from torch.func import functional_call, grad, jvp, vmap

    torch.manual_seed(0)
    layer = layer.double()
    x = torch.randn(*shape, dtype=torch.float64)
    delta = torch.randn_like(layer(x))
    params = {n: p.detach() for n, p in layer.named_parameters()}

    def share(p, xn, dn):  # noqa: ANN001, ANN202
        return (functional_call(layer, p, (xn.unsqueeze(0),)) * dn.unsqueeze(0)).sum()

    expected = vmap(grad(share), in_dims=(None, 0, 0))(params, x, delta)
    got = layer_per_sample_grads(layer, (x,), delta, ["weight", "bias"])
    for n in params:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-10, atol=1e-12)
    direction = {n: torch.randn_like(p) for n, p in params.items()}
    _, tangent = jvp(lambda *ps: functional_call(layer, dict(zip(params, ps)), (x,)), tuple(params.values()),
                     tuple(direction.values()))  # fmt: skip
    torch.testing.assert_close(
        layer_slopes(layer, (x,), delta, params, direction), (tangent * delta).flatten(1).sum(1), rtol=1e-10, atol=1e-12
    )


def test_statistics_of_small_output_convolution_match_reference() -> None:
    """A network whose conv layers take the unfold path, every first-order statistic against the reference."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.Flatten(), nn.Linear(5, 3)).double()
    reference_model = copy.deepcopy(model)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    quantities = ["NormTest", "InnerTest", "OrthoTest", "MeanGSNR", "GradHist1d", "GradHist2d"]
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=quantities)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    _, g, names, sizes = per_sample(reference_model, "ce", "mean", x, y)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
    ck.close()
    by = {r.quantity: r for r in ck.records}
    from reference import ref_inner_test, ref_mean_gsnr, ref_norm_test, ref_ortho_test

    assert by["NormTest"].value == pytest.approx(ref_norm_test(g), rel=1e-9)
    assert by["InnerTest"].value == pytest.approx(ref_inner_test(g), rel=1e-9)
    assert by["OrthoTest"].value == pytest.approx(ref_ortho_test(g), rel=1e-9)
    assert by["MeanGSNR"].value == pytest.approx(ref_mean_gsnr(g), rel=1e-9)
    flat = g.numpy()
    np.testing.assert_array_equal(by["GradHist1d"].value.counts, numpy_hist(flat.reshape(-1), -1, 1, 100)[0])
    edges = np.linspace(-1, 1, 51)
    pairs_x = np.broadcast_to(np.clip(theta.numpy(), -1, 1), flat.shape).reshape(-1)
    expected2d = np.histogram2d(pairs_x, np.clip(flat, -1, 1).reshape(-1), bins=[edges, edges])[0]
    np.testing.assert_array_equal(by["GradHist2d"].value.counts, expected2d.astype(np.int64))
