"""The training loop stays the user's: same parameters, same RNG stream, no hooks left behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_mod
from torch.optim import optimizer as optimizer_mod

import cockpit_log


def net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(36, 5)
    )


def train(optim: str, attach: bool, steps: int = 20, quantities=("economy", "MeanGSNR", "CABS")):
    torch.manual_seed(0)
    model = net()
    loss_fn = nn.CrossEntropyLoss()
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if optim == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    ck = (
        cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=list(quantities), schedule=3)
        if attach
        else None
    )
    data = torch.Generator().manual_seed(3)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 1, 8, 8, generator=data)
        y = torch.randint(0, 5, (16,), generator=data)
        opt.zero_grad()
        loss = loss_fn(model(x), y)  # dropout draws from the global RNG
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if ck is not None:
        ck.close()
    return [p.detach().clone() for p in model.parameters()], losses, torch.get_rng_state(), ck


@pytest.mark.parametrize("quantities", [("economy", "MeanGSNR", "CABS"), ("full",)])
def test_parameters_losses_and_rng_unchanged(quantities):
    for optim in ("sgd", "adam"):
        p0, l0, rng0, _ = train(optim, attach=False)
        p1, l1, rng1, ck = train(optim, attach=True, quantities=quantities)
        assert len(ck.records) > 0
        curvature = [r for r in ck.records if r.quantity in ("HessTrace", "TICDiag", "HessMaxEV", "GradHist2d")]
        assert len(curvature) == (28 if "full" in quantities else 0)  # 7 tracked steps x 4
        assert all(r.reason is None for r in curvature), [(r.quantity, r.reason) for r in curvature if r.reason]
        assert l0 == l1
        for a, b in zip(p0, p1):
            torch.testing.assert_close(b, a, rtol=1e-7, atol=0)
        assert torch.equal(rng0, rng1)


def test_detach_leaves_no_hooks():
    torch.manual_seed(0)
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before_global = (
        len(module_mod._global_forward_hooks),
        len(optimizer_mod._global_optimizer_pre_hooks),
        len(optimizer_mod._global_optimizer_post_hooks),
    )
    ck = cockpit_log.attach(model, sink="memory")  # discovers the loss and optimizer: global hooks
    assert any(len(m._forward_hooks) for m in model.modules())
    ck.detach()
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert len(opt._optimizer_step_pre_hooks) == 0 and len(opt._optimizer_step_post_hooks) == 0
    after_global = (
        len(module_mod._global_forward_hooks),
        len(optimizer_mod._global_optimizer_pre_hooks),
        len(optimizer_mod._global_optimizer_post_hooks),
    )
    assert after_global == before_global
    ck.close()


def test_attach_with_model_only_finds_loss_and_optimizer_from_step_zero():
    """The product card's line: attach(model, sink=...) with an nn loss module and torch.optim."""
    torch.manual_seed(0)
    model = net()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, sink="memory")
    for _ in range(3):
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 5, (8,))
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    names = {(r.quantity, r.step) for r in ck.records}
    for q in ("Loss", "GradNorm", "NormTest", "GradHist1d", "Alpha", "UpdateSize"):
        assert (q, 0) in names, q
    # detach removed the discovered loss module's hook too
    assert len(loss_fn._forward_hooks) == 0


def test_functional_loss_skips_loss_quantities_with_one_message():
    import warnings

    torch.manual_seed(0)
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck = cockpit_log.attach(model, nn.functional.cross_entropy, opt, sink="memory")
        for _ in range(3):
            x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 5, (8,))
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    ck.close()
    msgs = [str(w.message) for w in caught if issubclass(w.category, cockpit_log.CockpitWarning)]
    skip = [m for m in msgs if "are skipped" in m]
    assert len(skip) == 1 and "Loss" in skip[0] and "Alpha" in skip[0] and "explicit API" in skip[0]
    names = {r.quantity for r in ck.records}
    assert "Alpha" not in names and "Loss" not in names and {"NormTest", "GradHist1d", "GradNorm"} <= names
