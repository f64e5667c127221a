"""Section 3.2 of the Cockpit paper: vanishing gradients, seen only in the layer-wise histograms.

Run:  python examples/paper_3_2_vanishing_gradients.py [--steps 300] [--out paper-examples]

Two 3C3D-like networks (three convolutions, three fully connected layers, scaled down to 8x8
digits) that differ only in their activation: ReLU or sigmoid. Trained the same way (Adam, lr
1e-3), the ReLU net learns and the sigmoid net stays at chance level. Their network-wide gradient
histograms look alike, because the fully connected layers near the output hold most of the
parameters and dominate them; the layer-wise histograms show that the sigmoid net's first layers
have degenerate gradient distributions, nearly all elements practically zero (Figure 4).

The individual gradient elements of these small nets are of order 1e-3, so GradHist1d is zoomed
to [-0.01, 0.01] with 200 bins (its default [-1, 1] would put them all into the two central bins).
The script prints each layer's histogram width (the standard deviation of the binned elements)
and writes ``paper-3-2-vanishing-gradients.png``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import cockpit_log
from cockpit_log.demo import digits_loader
from cockpit_log.records import Histogram1d, Record
from cockpit_log.render import draw_histogram1d

ACTIVATIONS = {"ReLU": nn.ReLU, "sigmoid": nn.Sigmoid}
COLORS = {"ReLU": "tab:blue", "sigmoid": "tab:orange"}
RANGE = 0.01
BINS = 200


def three_c_three_d(activation: type[nn.Module]) -> nn.Sequential:
    """3C3D scaled down to 1x8x8 inputs: conv 16, conv 24, conv 32 (two max-pools), then 256, 192, 10 units."""
    act = activation
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        act(),
        nn.Conv2d(16, 24, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 256),
        act(),
        nn.Linear(256, 192),
        act(),
        nn.Linear(192, 10),
    )


def histogram_width(h: Histogram1d) -> float:
    """Standard deviation of the binned values (bin centres weighted by counts)."""
    centres = (h.edges[:-1] + h.edges[1:]) / 2
    total = h.counts.sum()
    if total == 0:
        return math.nan
    p = h.counts / total
    mean = float((p * centres).sum())
    return float(np.sqrt((p * (centres - mean) ** 2).sum()))


@dataclass
class Run:
    """One network's training: its last layer-wise histograms and its losses."""

    activation: str
    histogram: Record
    losses: list[float]
    order: list[str]

    @property
    def weights(self) -> dict[str, Histogram1d]:
        """The weight parameters' histograms, input side first (the model's parameter order)."""
        return {n: self.histogram.per_param[n] for n in self.order if n.endswith("weight")}


def train(activation: str, steps: int = 300, seed: int = 0) -> Run:
    """Train the 3C3D-like net with ``activation`` on digits; GradHist1d at the last step."""
    torch.manual_seed(seed)
    model = three_c_three_d(ACTIVATIONS[activation])
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    hist = cockpit_log.GradHist1d(schedule=[steps - 1], bins=BINS, low=-RANGE, high=RANGE)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=[hist, "Loss"], schedule=10)
    batches = digits_loader(64, seed)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    last = next(r for r in reversed(ck.records) if r.quantity == "GradHist1d")
    losses = [float(r.value) for r in ck.records if r.quantity == "Loss"]
    return Run(activation, last, losses, [n for n, _ in model.named_parameters()])


def run(steps: int = 300, seed: int = 0) -> dict[str, Run]:
    """Both networks, trained the same way."""
    return {name: train(name, steps, seed) for name in ACTIVATIONS}


def figure(runs: dict[str, Run]) -> Figure:
    """(a) the network-wide histograms of both nets; (b) each weight layer's histogram, one row per net."""
    layers = list(next(iter(runs.values())).weights)
    fig = Figure(figsize=(2.1 * len(layers), 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.6])
    ax = top.add_subplot()
    for name, r in runs.items():
        h = r.histogram.value
        centres = (h.edges[:-1] + h.edges[1:]) / 2
        ax.step(centres, h.counts, where="mid", color=COLORS[name], label=f"{name} (width {histogram_width(h):.2g})")
    ax.set_yscale("log")
    ax.set_xlim(-RANGE, RANGE)
    ax.set_xlabel("individual gradient element")
    ax.legend()
    ax.set_title("(a) network-wide: both look alike", fontsize=10)
    axes = bottom.subplots(len(runs), len(layers), sharex=True)
    for row, (name, r) in enumerate(runs.items()):
        for col, layer in enumerate(layers):
            h = r.weights[layer]
            draw_histogram1d(axes[row, col], h, color=COLORS[name], clipped_color="tab:red")
            axes[row, col].set_title(f"{name} {layer}\nwidth {histogram_width(h):.2g}", fontsize=8)
            axes[row, col].tick_params(labelsize=6)
    bottom.suptitle(
        "(b) layer-wise, input side first: the sigmoid net's first layers are degenerate (red: clipped)", fontsize=10
    )
    step = next(iter(runs.values())).histogram.step
    fig.suptitle(f"Section 3.2: ReLU vs sigmoid in a 3C3D-like CNN (GradHist1d at step {step})")
    return fig


def main() -> None:
    """Train both nets, print the widths and losses, write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="paper-examples", help="directory for the figure")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a small model: one thread is fastest, and kind to a shared machine

    runs = run(args.steps)
    for name, r in runs.items():
        widths = ", ".join(f"{n} {histogram_width(h):.2g}" for n, h in r.weights.items())
        print(
            f"{name:<8} loss {r.losses[0]:.3f} -> {np.mean(r.losses[-5:]):.3f}; gradient histogram width: "
            f"network-wide {histogram_width(r.histogram.value):.2g}; per layer (input side first): {widths}"
        )
    relu, sigmoid = runs["ReLU"], runs["sigmoid"]
    first = next(iter(relu.weights))
    print(
        f"network-wide widths differ by a factor {_ratio(relu.histogram.value, sigmoid.histogram.value):.1f}; "
        f"in the first layer ({first}) by {_ratio(relu.weights[first], sigmoid.weights[first]):.0f}: "
        "only the layer-wise view shows that the sigmoid net's first layers barely receive gradient."
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "paper-3-2-vanishing-gradients.png"
    figure(runs).savefig(path, dpi=100)
    print(f"figure: {path}")


def _ratio(a: Histogram1d, b: Histogram1d) -> float:
    wa, wb = histogram_width(a), histogram_width(b)
    return max(wa, wb) / min(wa, wb)


if __name__ == "__main__":
    main()
