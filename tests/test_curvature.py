"""Curvature instruments against exact float64 references: Hessians from torch.autograd, per-sample
gradients from torch.func, GGN as J^T H J by hand, eigenvalues from torch.linalg.eigvalsh."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import blocks, cnn, exact_ggn, exact_hessian, flat_named_params, make_batch, mlp, per_sample, unflatten
from torch import nn
from torch.func import functional_call

import cockpit_log
from cockpit_log import HessMaxEV, HessTrace, TICDiag, TICTrace

RTOL = 1e-6


def model_of(kind: str) -> nn.Module:
    torch.manual_seed(1)
    if kind == "relu_mlp":
        model = mlp(nn.ReLU)
    elif kind == "sigmoid_mlp":
        model = mlp(nn.Sigmoid)
    else:
        model = cnn()
    return model.double()


def loss_module(loss: str, reduction: str) -> nn.Module:
    return nn.CrossEntropyLoss(reduction=reduction) if loss == "ce" else nn.MSELoss(reduction=reduction)


def one_step(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, quantities: list) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=quantities)
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
    ck.close()
    return {r.quantity: r for r in ck.records if r.step == 0}


def close(a: float, b: float, rtol: float = RTOL, atol: float = 1e-12) -> bool:
    return math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b)


@pytest.mark.parametrize("kind", ["relu_mlp", "sigmoid_mlp", "cnn"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_curvature_matches_exact_hessian(kind: str, loss: str, reduction: str) -> None:
    model = model_of(kind)
    loss_fn = loss_module(loss, reduction)
    gen = torch.Generator().manual_seed(7)
    x, y = make_batch("mlp" if "mlp" in kind else "cnn", loss, 6, gen)
    batch = x.shape[0]

    hess = exact_hessian(model, loss_fn, x, y)
    _, names, shapes = flat_named_params(model)
    diag = blocks(torch.diagonal(hess), names, shapes)
    lam_max = float(torch.linalg.eigvalsh(hess).max())
    _, grads, gnames, _ = per_sample(model, loss, reduction, x, y)
    assert gnames == names
    second = (grads**2).sum(0)  # sum_n g_n^2 elementwise
    second_blocks = blocks(second, names, shapes)

    got = one_step(model, loss_fn, x, y, [HessTrace(), TICDiag(), TICTrace(), HessMaxEV()])

    trace = got["HessTrace"]
    assert close(trace.value, float(torch.diagonal(hess).sum()))
    for n in names:
        assert close(trace.per_param[n], float(diag[n].sum())), n

    keep = torch.diagonal(hess) != 0
    tic_diag = float((second[keep] / torch.diagonal(hess)[keep]).sum()) / batch
    assert close(got["TICDiag"].value, tic_diag)
    for n in names:
        k = diag[n] != 0
        if k.any():
            assert close(got["TICDiag"].per_param[n], float((second_blocks[n][k] / diag[n][k]).sum()) / batch), n

    tic_trace = float(second.sum()) / batch / float(torch.diagonal(hess).sum())
    assert close(got["TICTrace"].value, tic_trace)
    for n in names:
        t = float(diag[n].sum())
        if t != 0:
            assert close(got["TICTrace"].per_param[n], float(second_blocks[n].sum()) / batch / t), n

    ev = got["HessMaxEV"]
    assert close(ev.value, lam_max, rtol=1e-3, atol=1e-6), (ev.value, lam_max)
    assert 1 <= ev.info["hvps"] <= 100 and ev.info["converged"] == 1.0


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_max_eigenvalue_is_largest_algebraic_not_largest_magnitude(method: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(15)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 2)
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(8, 1, generator=gen, dtype=torch.float64) * 3
    loss_fn = nn.MSELoss()
    evals = torch.linalg.eigvalsh(exact_hessian(model, loss_fn, x, y))
    lam_min, lam_max = float(evals.min()), float(evals.max())
    assert lam_min < -1.5 * lam_max  # the case: the most negative eigenvalue dominates in magnitude
    rtol = 1e-3 if method == "lanczos" else 1e-8  # power's rule bounds successive changes, not the error
    got = one_step(model, loss_fn, x, y, [HessMaxEV(method=method, rtol=rtol, max_iter=2000)])["HessMaxEV"]
    assert close(got.value, lam_max, rtol=1e-3, atol=1e-6), (got.value, lam_max, lam_min)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_diagonal_matches_jacobian_products_by_hand(loss: str) -> None:
    model = model_of("sigmoid_mlp")
    loss_fn = loss_module(loss, "mean")
    x, y = make_batch("mlp", loss, 6, torch.Generator().manual_seed(3))
    ggn = exact_ggn(model, loss_fn, x, y)
    hess = exact_hessian(model, loss_fn, x, y)
    _, names, shapes = flat_named_params(model)
    diag = blocks(torch.diagonal(ggn), names, shapes)
    got = one_step(model, loss_fn, x, y, [HessTrace(curvature="ggn")])["HessTrace"]
    assert close(got.value, float(torch.diagonal(ggn).sum()))
    for n in names:
        assert close(got.per_param[n], float(diag[n].sum())), n
    # a sigmoid network's Hessian differs from its GGN: the test tells the two apart
    assert not close(float(torch.diagonal(hess).sum()), float(torch.diagonal(ggn).sum()), rtol=1e-3)


def test_monte_carlo_ggn_is_unbiased() -> None:
    model = model_of("sigmoid_mlp")
    loss_fn = nn.CrossEntropyLoss()
    x, y = make_batch("mlp", "ce", 6, torch.Generator().manual_seed(3))
    exact = float(torch.diagonal(exact_ggn(model, loss_fn, x, y)).sum())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # same parameters every step: fresh MC samples only
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=[HessTrace(curvature="ggn_mc")])
    state = torch.get_rng_state()
    for _ in range(300):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    assert torch.equal(state, torch.get_rng_state())  # MC samples come from the cockpit's own generator
    values = np.array([r.value for r in ck.records])
    assert values.std() > 0  # the samples differ from step to step
    sem = values.std(ddof=1) / math.sqrt(len(values))
    assert abs(values.mean() - exact) < 4 * sem, (values.mean(), exact, sem)
    more = [HessTrace(curvature="ggn_mc", mc_samples=50)]
    many = one_step(model, loss_fn, x, y, more)["HessTrace"].value
    assert abs(many - exact) < abs(values[0] - exact) + 4 * sem


def test_dropout_is_replayed_with_the_users_mask() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = make_batch("mlp", "ce", 6, torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    mask_state = torch.get_rng_state()
    hess = exact_hessian_with_rng(model, loss_fn, x, y, mask_state)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=[HessTrace(), HessMaxEV()])
    torch.set_rng_state(mask_state)
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    after_user = torch.get_rng_state()
    opt.step()
    assert torch.equal(after_user, torch.get_rng_state())  # the recompute left the global stream alone
    ck.close()
    got = {r.quantity: r.value for r in ck.records}
    assert close(got["HessTrace"], float(torch.diagonal(hess).sum()))
    assert close(got["HessMaxEV"], float(torch.linalg.eigvalsh(hess).max()), rtol=1e-3, atol=1e-6)


def exact_hessian_with_rng(model, loss_fn, x, y, state) -> torch.Tensor:
    """The Hessian with the dropout mask drawn from ``state`` in every evaluation."""
    flat, names, shapes = flat_named_params(model)

    def loss_of(v: torch.Tensor) -> torch.Tensor:
        torch.set_rng_state(state)
        return loss_fn(functional_call(model, unflatten(v, names, shapes), (x,)), y)

    with torch.random.fork_rng():
        return torch.autograd.functional.hessian(loss_of, flat)


@pytest.mark.parametrize("kind", ["sigmoid_mlp", "cnn"])
def test_grad_hist_2d_matches_numpy_histogram2d(kind: str) -> None:
    model = model_of(kind)
    loss_fn = nn.CrossEntropyLoss()
    x, y = make_batch("mlp" if "mlp" in kind else "cnn", "ce", 7, torch.Generator().manual_seed(5))
    _, grads, names, _ = per_sample(model, "ce", "mean", x, y)
    flat, _, shapes = flat_named_params(model)
    low_x, high_x, low_y, high_y = -0.2, 0.15, -0.05, 0.08  # narrow: values spill out on both axes
    quantity = cockpit_log.GradHist2d(
        param_bins=7, grad_bins=9, param_range=(low_x, high_x), grad_range=(low_y, high_y)
    )
    got = one_step(model, loss_fn, x, y, [quantity])["GradHist2d"]
    batch = x.shape[0]

    def reference(theta: torch.Tensor, g: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
        xs = np.repeat(theta.numpy()[None, :], batch, axis=0).reshape(-1)
        ys = g.numpy().reshape(-1)
        counts, _, _ = np.histogram2d(
            np.clip(xs, low_x, high_x),
            np.clip(ys, low_y, high_y),
            bins=(7, 9),
            range=((low_x, high_x), (low_y, high_y)),
        )
        clipped = (int((xs < low_x).sum()), int((xs > high_x).sum()), int((ys < low_y).sum()), int((ys > high_y).sum()))
        return counts.astype(np.int64), clipped

    counts, clipped = reference(flat, grads)
    h = got.value
    np.testing.assert_array_equal(h.counts, counts)
    assert (h.x_below, h.x_above, h.y_below, h.y_above) == clipped and min(clipped) > 0
    assert h.total == batch * flat.numel() and h.nonfinite == 0
    np.testing.assert_allclose(h.x_edges, np.linspace(low_x, high_x, 8))
    sizes = [math.prod(s) for s in shapes]
    for n, theta, g in zip(names, flat.split(sizes), grads.split(sizes, dim=1)):
        c, clip = reference(theta, g)
        np.testing.assert_array_equal(got.per_param[n].counts, c)
        assert got.per_param[n].total == batch * theta.numel()
    # the marginals are the two one-dimensional histograms of the same pairs
    np.testing.assert_array_equal(
        h.y_marginal().counts, np.histogram(np.clip(grads.numpy(), low_y, high_y), 9, (low_y, high_y))[0]
    )


def test_full_preset_runs_on_the_example_cnn() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from train_cnn_digits import digits_loader, small_cnn

    torch.manual_seed(0)
    model, loss_fn = small_cnn(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities="full", schedule=cockpit_log.every(2))
    for step, (x, y) in enumerate(digits_loader(64)):
        if step == 4:
            break
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    got = {(r.quantity, r.step): r for r in ck.records}
    for q in cockpit_log.PRESETS["full"]:
        rec = got[(q, 2)]
        assert rec.reason is None, (q, rec.reason)
        if rec.is_scalar:
            assert math.isfinite(rec.value), q
    assert ("HessTrace", 1) not in got and ("HessMaxEV", 3) not in got  # nothing on untracked steps
    assert got[("HessTrace", 0)].value > 0 and got[("HessMaxEV", 0)].value > 0
    assert set(cockpit_log.PRESETS["economy"]) < set(cockpit_log.PRESETS["business"]) < set(cockpit_log.PRESETS["full"])


def scalar_network_run(batch: int, steps: int = 3000) -> tuple[dict[int, float], dict[int, float], float]:
    """Appendix D.2: f(theta, x) = w2 * w1 * x on N = 100 points, theta_0 = (0.1, 1.7), lr 0.1."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, generator=gen, dtype=torch.float64)
    y = 1.4 * x + torch.randn(100, 1, generator=gen, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.fill_(0.1)
        model[1].weight.fill_(1.7)
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["HessMaxEV", "Loss"], schedule=25)
    pick = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randperm(100, generator=pick)[:batch]
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    ck.close()
    ev = {r.step: r.value for r in ck.records if r.quantity == "HessMaxEV"}
    loss = {r.step: r.value for r in ck.records if r.quantity == "Loss"}
    with torch.no_grad():
        return ev, loss, float(loss_fn(model(x), y))


def test_appendix_d2_sgd_noise_regularises_the_sharpest_direction() -> None:
    """SGD (|B| = 95) and GD (|B| = 100) reach the same loss, but SGD's HessMaxEV ends lower.

    Observed (3000 steps, readings every 25, mean over the last 1000 steps): SGD 9.22 (std 0.32
    over 40 readings), GD 9.745; training losses 1.022 vs 1.016; full-data losses 1.0192 vs 1.0165.
    """
    ev_sgd, loss_sgd, full_sgd = scalar_network_run(95)
    ev_gd, loss_gd, full_gd = scalar_network_run(100)
    late_sgd = np.array([v for s, v in ev_sgd.items() if s >= 2000])
    late_gd = np.array([v for s, v in ev_gd.items() if s >= 2000])
    early_sgd = np.array([v for s, v in ev_sgd.items() if 100 <= s < 500])
    # the losses stay close ...
    assert abs(full_sgd - full_gd) / full_gd < 0.005
    assert abs(np.mean([v for s, v in loss_sgd.items() if s >= 2000]) - full_gd) / full_gd < 0.02
    # ... while SGD's largest eigenvalue ends measurably lower than GD's (margin 0.52 observed)
    sem = late_sgd.std(ddof=1) / math.sqrt(len(late_sgd))
    assert late_gd.mean() - late_sgd.mean() > 0.3 and late_gd.mean() - late_sgd.mean() > 5 * sem
    assert late_sgd.mean() < early_sgd.mean() - 0.3  # and it decreases where the loss has converged
    assert late_gd.std() < 1e-9  # GD has converged: its Hessian no longer moves


def test_explicit_api_recomputes_from_the_batch_it_is_given() -> None:
    def run(explicit: bool, give_batch: bool = True) -> dict[str, cockpit_log.Record]:
        model = model_of("sigmoid_mlp")
        loss_fn = nn.CrossEntropyLoss()
        x, y = make_batch("mlp", "ce", 6, torch.Generator().manual_seed(3))
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        quantities = [HessTrace(), TICTrace(), HessMaxEV()]
        ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=quantities, automatic=not explicit)
        opt.zero_grad()
        out = model(x)
        if explicit:
            losses = nn.functional.cross_entropy(out, y, reduction="none")
            with ck.backward(losses, batch=(x, y) if give_batch else None):
                losses.mean().backward()
            opt.step()
            ck.step()
        else:
            loss_fn(out, y).backward()
            opt.step()
        ck.close()
        return {r.quantity: r for r in ck.records}

    auto, explicit, missing = run(False), run(True), run(True, give_batch=False)
    for q in ("HessTrace", "TICTrace", "HessMaxEV"):
        assert close(explicit[q].value, auto[q].value, rtol=1e-10), q
        assert math.isnan(missing[q].value) and "batch=(inputs, targets)" in missing[q].reason


def test_loss_not_taken_from_the_model_output_gives_nan_with_the_fix() -> None:
    model = model_of("sigmoid_mlp")
    loss_fn = nn.CrossEntropyLoss()
    x, y = make_batch("mlp", "ce", 6, torch.Generator().manual_seed(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["HessTrace", "HessMaxEV", "GradNorm"])
    with pytest.warns(cockpit_log.CockpitWarning, match="not computed directly from the model's output"):
        opt.zero_grad()
        loss_fn(model(x) * 2.0, y).backward()  # an operation between the model and the loss
        opt.step()
    ck.close()
    got = {r.quantity: r for r in ck.records}
    assert math.isnan(got["HessTrace"].value) and math.isnan(got["HessMaxEV"].value)
    assert math.isfinite(got["GradNorm"].value)


class FunctionalCNN(nn.Module):
    """Forward code between layers (functional ReLU, view): BackPACK cannot traverse it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


@pytest.mark.parametrize("loss", ["ce", "mse", "bce"])
def test_ggn_of_any_forward_code_matches_jacobian_products_and_relu_hessian(loss: str) -> None:
    torch.manual_seed(4)
    model = FunctionalCNN().double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 2, 8, 8, generator=gen, dtype=torch.float64)
    if loss == "ce":
        loss_fn, y = nn.CrossEntropyLoss(), torch.randint(0, 4, (5,), generator=gen)
    elif loss == "mse":
        loss_fn, y = nn.MSELoss(reduction="sum"), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    else:
        loss_fn, y = nn.BCEWithLogitsLoss(), torch.rand(5, 4, generator=gen, dtype=torch.float64).round()
    ggn = torch.diagonal(exact_ggn(model, loss_fn, x, y))
    hess = torch.diagonal(exact_hessian(model, loss_fn, x, y))
    torch.testing.assert_close(ggn, hess, rtol=1e-9, atol=1e-12)  # piecewise linear in each weight
    _, names, shapes = flat_named_params(model)
    diag = blocks(ggn, names, shapes)
    got = one_step(model, loss_fn, x, y, [HessTrace(curvature="ggn"), TICTrace(curvature="ggn")])
    assert close(got["HessTrace"].value, float(ggn.sum()))
    for n in names:
        assert close(got["HessTrace"].per_param[n], float(diag[n].sum())), n
    # the exact Hessian diagonal needs BackPACK, which cannot traverse this forward: NaN with the way out
    with pytest.warns(cockpit_log.CockpitWarning, match="curvature='ggn'"):
        hess_rec = one_step(model, loss_fn, x, y, [HessTrace()])["HessTrace"]
    assert math.isnan(hess_rec.value) and "curvature='ggn'" in hess_rec.reason
