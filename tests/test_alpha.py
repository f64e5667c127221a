"""Alpha on closed forms: a deterministic quadratic, where the step position is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import cockpit_log
from cockpit_log.quantities import equations as eq


def quadratic_run(lr_factor: float) -> float:
    """l(theta) = (theta^T x - y)^2 for identical samples: f(tau) is an exact parabola.

    SGD with lr = lr_factor / (2 ||x||^2) lands at lr_factor times the distance to the minimum.
    """
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False).double()
    x = torch.randn(1, 4, dtype=torch.float64).repeat(8, 1)
    y = torch.full((8, 1), 3.0, dtype=torch.float64)
    lr = lr_factor / (2 * float(x[0].square().sum()))
    # MSELoss(mean) over one output: l_n = (theta^T x - y)^2, grad = 2 (theta^T x - y) x
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["Alpha"])
    for _ in range(2):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    (rec,) = [r for r in ck.records if r.step == 0]
    return rec.value


def test_step_to_the_minimum_is_zero():
    assert quadratic_run(1.0) == pytest.approx(0.0, abs=1e-9)


def test_tiny_step_is_minus_one():
    assert quadratic_run(1e-6) == pytest.approx(-1.0, abs=1e-5)


def test_step_to_the_mirrored_point_is_plus_one():
    assert quadratic_run(2.0) == pytest.approx(1.0, abs=1e-9)


def test_overshoot_between():
    assert quadratic_run(1.5) == pytest.approx(0.5, abs=1e-9)


def test_non_convex_fit_is_nan_with_reason():
    tau = 0.5
    w = eq.fit_quadratic(
        tau, np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([0.75, 0.75]), np.array([-1.0, -1.0])
    )
    # observations of f = 1 - tau^2: concave
    np.testing.assert_allclose(w, [1.0, 0.0, -1.0], atol=1e-12)
    value, reason = eq.alpha_from_fit(w, tau)
    assert math.isnan(value) and "not convex" in reason


def test_exact_observations_become_constraints():
    """Zero-variance losses are met exactly; noisy slopes are fitted around them."""
    rng = np.random.default_rng(0)
    l0, l1 = np.full(5, 2.0), np.full(5, 1.5)
    d0, d1 = rng.normal(-1.0, 0.1, 5), rng.normal(0.2, 0.1, 5)
    w = eq.fit_quadratic(1.0, l0, d0, l1, d1)
    assert w[0] == pytest.approx(2.0) and w.sum() == pytest.approx(1.5)


def test_batch_of_one_gives_nan_and_one_warning():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["Alpha", "NormTest", "GradNorm"])
    with pytest.warns(cockpit_log.CockpitWarning) as caught:
        for _ in range(4):
            opt.zero_grad()
            loss_fn(model(torch.randn(1, 3, dtype=torch.float64)), torch.tensor([1])).backward()
            opt.step()
    ck.close()
    by = {(r.quantity, r.step): r for r in ck.records}
    assert math.isnan(by[("Alpha", 0)].value) and "2 samples" in by[("Alpha", 0)].reason
    assert math.isnan(by[("NormTest", 2)].value) and "2 samples" in by[("NormTest", 2)].reason
    assert not math.isnan(by[("GradNorm", 2)].value)
    texts = [str(w.message) for w in caught]
    assert sum("NormTest is NaN" in t for t in texts) == 1  # once, not every step
