"""Every first-order quantity against an independent float64 reference (torch.func per-sample
gradients of the whole model, and the paper's equations as written), at rtol 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import (
    cnn,
    flat_params,
    make_batch,
    mlp,
    per_sample,
    ref_alpha,
    ref_cabs,
    ref_early_stopping,
    ref_inner_test,
    ref_mean_gsnr,
    ref_norm_test,
    ref_ortho_test,
)
from torch import nn

import cockpit_log

RTOL = 1e-6
STEPS = 3
ALL = ["economy", "MeanGSNR", "CABS", "EarlyStopping"]


def close(actual: float, expected: float, rtol: float = RTOL) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=1e-12)


def run_instrumented(kind, loss, reduction, batch, opt_name, hist=None):
    torch.manual_seed(0)
    model = (mlp() if kind == "mlp" else cnn()).double()
    loss_fn = nn.CrossEntropyLoss(reduction=reduction) if loss == "ce" else nn.MSELoss(reduction=reduction)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
        if opt_name == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    quantities = (
        ALL
        if hist is None
        else [q for q in ALL if q != "economy"]
        + ["Alpha", "Distance", "UpdateSize", "GradNorm", "NormTest", "InnerTest", "OrthoTest", "Loss", "Time", hist]
    )
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=quantities)
    gen = torch.Generator().manual_seed(1)
    snapshots, batches, lrs = [flat_params(model)], [], []
    ref_model = (mlp() if kind == "mlp" else cnn()).double()
    refs = []
    for _ in range(STEPS + 1):
        x, y = make_batch(kind, loss, batch, gen)
        ref_model.load_state_dict(model.state_dict())
        refs.append(per_sample(ref_model, loss, reduction, x, y))
        batches.append((x, y))
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        out = loss_fn(model(x), y)
        out.backward()
        opt.step()
        snapshots.append(flat_params(model))
    ck.close()
    by = {}
    for r in ck.records:
        by[(r.quantity, r.step)] = r
    return by, refs, snapshots, lrs


CASES = [
    (kind, loss, reduction, batch, opt)
    for kind in ("mlp", "cnn")
    for loss in ("ce", "mse")
    for reduction in ("mean", "sum")
    for batch in (2, 32)
    for opt in ("sgd", "adam")
]


@pytest.mark.parametrize("kind,loss,reduction,batch,opt", CASES)
def test_quantities_match_reference(kind, loss, reduction, batch, opt):
    by, refs, snaps, lrs = run_instrumented(kind, loss, reduction, batch, opt)
    for t in range(STEPS):
        losses, g, names, sizes = refs[t]
        gb = g.mean(0)
        checks = {
            "Loss": float(losses.mean()),
            "GradNorm": float(gb.norm()),
            "Distance": float((snaps[t] - snaps[0]).norm()),
            "UpdateSize": float((snaps[t + 1] - snaps[t]).norm()),
            "NormTest": ref_norm_test(g),
            "InnerTest": ref_inner_test(g),
            "OrthoTest": ref_ortho_test(g),
            "MeanGSNR": ref_mean_gsnr(g),
            "EarlyStopping": ref_early_stopping(g),
            "CABS": ref_cabs(g, float(losses.mean()), lrs[t]),
        }
        losses1, g1, *_ = refs[t + 1]
        checks["Alpha"] = ref_alpha(losses, g, losses1, g1, snaps[t + 1] - snaps[t])
        for name, expected in checks.items():
            if expected is None:
                continue
            actual = by[(name, t)].value
            assert close(actual, expected), f"{name} at step {t}: {actual} != {expected} ({by[(name, t)].reason})"
        # per-parameter detail: GradNorm, Distance, UpdateSize
        offsets = np.cumsum([0, *sizes])
        for i, pname in enumerate(names):
            sl = slice(offsets[i], offsets[i + 1])
            assert close(by[("GradNorm", t)].per_param[pname], float(gb[sl].norm()))
            assert close(by[("UpdateSize", t)].per_param[pname], float((snaps[t + 1] - snaps[t])[sl].norm()))
            assert close(by[("Distance", t)].per_param[pname], float((snaps[t] - snaps[0])[sl].norm()))
        # GradHist1d: network-wide and per parameter, against numpy on the clipped elements
        hist = by[("GradHist1d", t)]
        edges = np.linspace(-1, 1, 101)
        flat = g.numpy()
        expected_counts, _ = np.histogram(np.clip(flat, -1, 1), bins=edges)
        np.testing.assert_array_equal(hist.value.counts, expected_counts)
        assert hist.value.total == flat.size
        assert hist.value.below == int((flat < -1).sum()) and hist.value.above == int((flat > 1).sum())
        for i, pname in enumerate(names):
            part = flat[:, offsets[i] : offsets[i + 1]]
            np.testing.assert_array_equal(hist.per_param[pname].counts, np.histogram(np.clip(part, -1, 1), edges)[0])


def test_histogram_clips_out_of_range_values_into_edge_bins():
    by, refs, *_ = run_instrumented(
        "cnn", "ce", "sum", 32, "sgd", hist=cockpit_log.GradHist1d(bins=7, low=-0.01, high=0.02)
    )
    g = refs[0][1].numpy()
    rec = by[("GradHist1d", 0)].value
    edges = np.linspace(-0.01, 0.02, 8)
    np.testing.assert_array_equal(rec.counts, np.histogram(np.clip(g, -0.01, 0.02), edges)[0])
    assert rec.below == int((g < -0.01).sum()) > 0 and rec.above == int((g > 0.02).sum()) > 0
    assert rec.counts.sum() == g.size


def test_mean_and_sum_reduction_give_the_same_ratios():
    """The scaling convention: the ratio quantities do not depend on the reduction."""
    a, *_ = run_instrumented("mlp", "ce", "mean", 32, "sgd")
    b, *_ = run_instrumented("mlp", "ce", "sum", 32, "sgd")
    for name in ("NormTest", "InnerTest", "OrthoTest", "MeanGSNR", "EarlyStopping"):
        assert close(a[(name, 0)].value, b[(name, 0)].value), name
    # the loss the user sees: sum = B * mean
    assert close(b[("Loss", 0)].value, 32 * a[("Loss", 0)].value)


def test_generic_layer_path_grouped_reflect_conv():
    """Layers without a closed form go through torch.func (grouped conv with reflect padding here)."""
    import copy

    from reference import per_sample

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, groups=2, padding=1, padding_mode="reflect"), nn.Tanh(), nn.Flatten(), nn.Linear(64, 3)
    ).double()
    reference_model = copy.deepcopy(model)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["NormTest", "InnerTest", "GradHist1d"])
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 2, 4, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen)
    _, g, *_ = per_sample(reference_model, "ce", "mean", x, y)
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
    ck.close()
    by = {r.quantity: r for r in ck.records}
    assert close(by["NormTest"].value, ref_norm_test(g))
    assert close(by["InnerTest"].value, ref_inner_test(g))
    np.testing.assert_array_equal(
        by["GradHist1d"].value.counts, np.histogram(np.clip(g.numpy(), -1, 1), np.linspace(-1, 1, 101))[0]
    )
