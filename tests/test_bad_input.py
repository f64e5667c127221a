"""Bad input: clear errors naming the module and the fix; NaN readings with reasons, never crashes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import cockpit_log
from cockpit_log import UnsupportedLossError, UnsupportedModelError


def test_batchnorm_in_train_mode_is_named_with_options():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedModelError) as err:
        cockpit_log.attach(model, nn.CrossEntropyLoss(), sink="memory")
    msg = str(err.value)
    assert "'1'" in msg and "eval" in msg and "GradNorm" in msg
    # in eval mode it is a per-sample layer like any other
    model.eval()
    ck = cockpit_log.attach(model, nn.CrossEntropyLoss(), sink="memory")
    ck.close()
    # and quantities without per-sample gradients work in train mode
    model.train()
    ck = cockpit_log.attach(model, nn.CrossEntropyLoss(), sink="memory", quantities=["Loss", "GradNorm", "Distance"])
    ck.close()


def test_layernorm_is_supported_per_sample():
    """BackPACK cannot handle LayerNorm; our per-layer torch.func path can (checked vs reference)."""
    import copy

    from reference import per_sample, ref_norm_test

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).double()
    reference_model = copy.deepcopy(model)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["NormTest"])
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    _, g, *_ = per_sample(reference_model, "ce", "mean", x, y)
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
    ck.close()
    assert ck.records[0].value == pytest.approx(ref_norm_test(g), rel=1e-6)


def test_rnn_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    with pytest.raises(UnsupportedModelError, match="'rnn'.*exclude"):
        cockpit_log.attach(Net(), nn.CrossEntropyLoss(), sink="memory")


def test_weight_tying_is_named():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(UnsupportedModelError, match="shared"):
        cockpit_log.attach(Tied(), nn.MSELoss(), sink="memory")


def test_unsupported_loss_is_named_with_options():
    with pytest.raises(UnsupportedLossError, match="CosineEmbeddingLoss.*explicit API"):
        cockpit_log.attach(nn.Linear(3, 2), nn.CosineEmbeddingLoss(), sink="memory")
    with pytest.raises(UnsupportedLossError, match="reduction='none'"):
        cockpit_log.attach(nn.Linear(3, 2), nn.MSELoss(reduction="none"), sink="memory")


def test_bad_arguments():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        cockpit_log.attach("model")
    with pytest.raises(ValueError, match="unknown quantity 'Alfa'"):
        cockpit_log.attach(nn.Linear(2, 2), quantities=["Alfa"], sink="memory")
    with pytest.raises(ValueError, match="curvature must be"):
        cockpit_log.HessTrace(curvature="fisher")
    with pytest.raises(ValueError, match="method must be"):
        cockpit_log.HessMaxEV(method="arnoldi")
    with pytest.raises(UnsupportedLossError, match="L1Loss has no Hessian"):
        cockpit_log.attach(nn.Linear(2, 2), nn.L1Loss(), quantities="business", sink="memory")
    with pytest.raises(ValueError, match="unknown sink 'nope'.*local"):
        cockpit_log.attach(nn.Linear(2, 2), sink="nope")
    with pytest.raises(ValueError, match="every"):
        cockpit_log.every(0)


def test_nan_gradients_are_recorded_and_training_goes_on():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = torch.randn(8, 3)
        x[2, 0] = float("nan")
        opt.zero_grad()
        loss_fn(model(x), torch.randint(0, 2, (8,))).backward()
        opt.step()
        # training goes on after the bad batch
        opt.zero_grad()
        loss_fn(model(torch.randn(8, 3)), torch.randint(0, 2, (8,))).backward()
        opt.step()
    ck.close()
    by = {(r.quantity, r.step): r for r in ck.records}
    assert math.isnan(by[("GradNorm", 0)].value)
    hist = by[("GradHist1d", 0)].value
    assert hist.nonfinite > 0 and hist.total == 8 * sum(p.numel() for p in model.parameters())
    assert any("NaN" in str(w.message) for w in caught if issubclass(w.category, cockpit_log.CockpitWarning))
    assert ck.current_step == 2


def test_failing_sink_never_stops_training():
    class Broken:
        def write(self, records):
            raise OSError("disk full")

        def close(self):
            raise OSError("still full")

    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    ck = cockpit_log.attach(model, loss_fn, opt, sink=[Broken(), "memory"])
    with pytest.warns(cockpit_log.CockpitWarning, match="disk full"):
        for _ in range(5):
            opt.zero_grad()
            loss_fn(model(torch.randn(4, 3)), torch.randint(0, 2, (4,))).backward()
            opt.step()
        ck.close()
    assert ck.current_step == 5 and len(ck.records) > 0
    broken = ck.sinks[0]
    assert broken.disabled and {r.step for r in broken.undelivered} == set(range(5))
