"""The paper's findings, each at small scale, from the examples' own code (examples/paper_*.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import paper_3_1_scaled_inputs as scaled  # noqa: E402
import paper_3_2_vanishing_gradients as vanishing  # noqa: E402

from cockpit_log.demo import digits_loader, small_cnn  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these models are small, and on a busy machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def individual_gradients_outside(scale: float, low: float = -1.0, high: float = 1.0) -> float:
    """The fraction of individual gradient elements outside [low, high] at step 0, computed directly."""
    torch.manual_seed(0)
    model = small_cnn()
    x, y = next(digits_loader(64, 0))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None] * scale,)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([v.flatten() for v in g.values()])
    return float(((flat < low) | (flat > high)).double().mean())


def test_section_3_1_raw_inputs_spill_out_of_the_histogram_range() -> None:
    """At the first step, ~23 % of the gradient elements of the [0, 255] run lie outside [-1, 1], none of the
    [0, 1] run's (observed 23.5 % and 0.0 %)."""
    fractions = {}
    for scale in scaled.SCALES.values():
        records = scaled.train(scale, steps=1, track_every=1)
        first = next(r for r in records if r.quantity == "GradHist1d")
        assert first.step == 0 and first.value.total == 64 * sum(p.numel() for p in small_cnn().parameters())
        fractions[scale] = scaled.outside(first.value)
    assert fractions[255.0] > 0.1 and fractions[1.0] < 0.005
    assert fractions[255.0] > 50 * max(fractions[1.0], 1e-4)
    # the instrument counts what is there: the same fraction from per-sample gradients computed directly
    assert fractions[255.0] == pytest.approx(individual_gradients_outside(255.0), abs=1e-6)


def test_section_3_2_sigmoid_first_layers_are_degenerate_while_network_wide_histograms_are_alike() -> None:
    """After 20 steps, the first two layers' histogram widths differ by > 20x between ReLU and sigmoid nets
    (observed 86x and 62x), the network-wide widths by < 3x (observed 1.7x)."""
    runs = vanishing.run(steps=20)
    relu, sigmoid = runs["ReLU"], runs["sigmoid"]
    assert list(relu.weights)[:2] == ["0.weight", "2.weight"]  # input side first
    width = vanishing.histogram_width
    for layer in ("0.weight", "2.weight"):
        assert width(relu.weights[layer]) > 20 * width(sigmoid.weights[layer]), layer
    net_relu, net_sigmoid = width(relu.histogram.value), width(sigmoid.histogram.value)
    assert max(net_relu, net_sigmoid) < 3 * min(net_relu, net_sigmoid)
    # the sigmoid net's first layer is degenerate: nearly every element in the two central bins (|g| < 1e-4)
    h = sigmoid.weights["0.weight"]
    centre = len(h.counts) // 2
    assert h.counts[centre - 1 : centre + 1].sum() > 0.9 * h.counts.sum()
    # and the fully connected layers hold most parameters, which is why they dominate the network-wide view
    model = vanishing.three_c_three_d(nn.ReLU)
    fc = sum(p.numel() for m in model if isinstance(m, nn.Linear) for p in m.parameters())
    assert fc > 0.8 * sum(p.numel() for p in model.parameters())


def test_section_3_3_digits_trial_runs_in_a_sweep(tmp_path: Path) -> None:
    """The example's training function, two short trials: alpha summaries and validation accuracy."""
    from digits_trial import train

    from cockpit_log.study import run_sweep

    config = {
        "method": "grid",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.02, 0.5]}, "steps": {"value": 40}},
    }
    result = run_sweep(config, train, out_dir=tmp_path)
    assert [r.params["lr"] for r in result.runs] == [0.02, 0.5]
    for r in result.runs:
        assert math.isfinite(r.alpha_median) and 0 <= r.value("val_accuracy") <= 1 and r.summary["alpha_count"] >= 4
