"""Section 3.1 of the Cockpit paper: incorrectly scaled data, seen in the gradient histogram.

Run:  python examples/paper_3_1_scaled_inputs.py [--steps 100] [--out paper-examples]

The same small CNN, the same seed and SGD settings, trained on scikit-learn's digits twice: once
on inputs scaled to [0, 1] and once on the "raw" inputs scaled to [0, 255] (the paper's CIFAR-10
example, where images come as integers). The images look the same to an auto-scaling viewer, but
GradHist1d, on its deliberate default range [-1, 1], shows at the first step that a large share
of the individual gradient elements falls outside that range (counted in its red edge bins); with
the default learning rate the raw run then blows up and stalls at chance level. The script prints
those numbers and writes ``paper-3-1-scaled-inputs.png``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

import cockpit_log
from cockpit_log.demo import digits_loader, small_cnn
from cockpit_log.records import Histogram1d, Record
from cockpit_log.render import draw_histogram1d

SCALES = {"inputs in [0, 1]": 1.0, "raw inputs in [0, 255]": 255.0}


@dataclass
class Run:
    """The records of one training run and its input scale."""

    label: str
    scale: float
    records: list[Record]

    def histograms(self) -> list[Record]:
        """The network-wide GradHist1d records, in step order."""
        return [r for r in self.records if r.quantity == "GradHist1d" and isinstance(r.value, Histogram1d)]

    def losses(self) -> list[tuple[int, float]]:
        """``(step, loss)`` of every Loss reading."""
        return [(r.step, float(r.value)) for r in self.records if r.quantity == "Loss"]


def outside(h: Histogram1d) -> float:
    """The fraction of gradient elements outside the histogram's range (clipped into its edge bins)."""
    return (h.below + h.above) / h.total if h.total else math.nan


def train(scale: float, steps: int = 100, lr: float = 0.1, track_every: int = 5, seed: int = 0) -> list[Record]:
    """Train the small CNN on digits scaled by ``scale`` (SGD, momentum 0.9); the cockpit's records."""
    torch.manual_seed(seed)
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=["GradHist1d", "Loss"], schedule=track_every)
    batches = digits_loader(64, seed)
    for _ in range(steps):
        x, y = next(batches)
        x = x * scale  # the only difference between the two runs
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    ck.close()
    return ck.records


def run(steps: int = 100, track_every: int = 5) -> list[Run]:
    """Both runs: correctly scaled and raw inputs."""
    return [Run(label, scale, train(scale, steps, track_every=track_every)) for label, scale in SCALES.items()]


def figure(runs: list[Run]) -> Figure:
    """Top: the network-wide gradient histogram at the first step of each run; bottom: the loss."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    for col, r in enumerate(runs):
        first = r.histograms()[0]
        ax = fig.add_subplot(grid[0, col])
        draw_histogram1d(ax, first.value, clipped_color="tab:red")
        ax.set_title(f"{r.label}: step {first.step}, {outside(first.value):.1%} outside [-1, 1]", fontsize=10)
        ax.set_xlabel("individual gradient element g_n(θ)_j")
    ax = fig.add_subplot(grid[1, :])
    for r in runs:
        steps, values = zip(*r.losses())
        ax.plot(steps, values, marker="o", markersize=3, label=r.label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mini-batch loss")
    ax.legend()
    fig.suptitle("Section 3.1: same CNN, same optimizer; only the input scale differs (GradHist1d on [-1, 1])")
    return fig


def main() -> None:
    """Run both trainings, print what they show, write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="paper-examples", help="directory for the figure")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and kind to a shared machine

    runs = run(args.steps)
    for r in runs:
        fractions = [outside(h.value) for h in r.histograms()]
        losses = [v for _, v in r.losses()]
        print(
            f"{r.label:<24} outside [-1, 1] at step 0: {fractions[0]:6.1%} (max {max(fractions):6.1%}); "
            f"loss {losses[0]:.3g} at step 0, {max(losses):.3g} at most, {losses[-1]:.3g} at the end"
        )
    print(
        "The raw inputs put a large share of the individual gradient elements outside GradHist1d's deliberate "
        "[-1, 1] range from the first step on, while the inputs look alike; with the same learning rate the raw "
        "run diverges and stalls, the correctly scaled one trains."
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "paper-3-1-scaled-inputs.png"
    figure(runs).savefig(path, dpi=100)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
