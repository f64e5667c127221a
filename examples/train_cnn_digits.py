"""Train a small CNN on scikit-learn's bundled digits for 100 steps with the cockpit attached.

Run:  python examples/train_cnn_digits.py [--steps 100] [--run-dir cockpit-runs/digits]

Prints the last reading of every quantity and where the records are; reload them with
``cockpit_log.read(run_dir)``.
"""

from __future__ import annotations

import argparse
import math

import torch
from sklearn.datasets import load_digits
from torch import nn

import cockpit_log


def digits_loader(batch_size: int, seed: int = 0):
    """Endless shuffled batches of the 1797 8x8 digits, scaled to [0, 1], from our own generator."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            yield x[idx], y[idx]


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--run-dir", default=None, help="local run directory (default: a new one under ./cockpit-runs)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    ck = cockpit_log.attach(
        model,
        loss_fn,
        opt,
        sink=["local", "memory"],
        quantities=["economy", "MeanGSNR", "CABS", "EarlyStopping"],
        sink_options={"local": {"run_dir": args.run_dir}} if args.run_dir else None,
    )
    batches = digits_loader(args.batch_size)
    for _ in range(args.steps):  # the user's loop, unchanged
        x, y = next(batches)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    ck.close()

    last: dict[str, cockpit_log.Record] = {}
    for r in ck.records:
        last[r.quantity] = r
    print(f"last readings after {args.steps} steps:")
    for name, r in last.items():
        if r.is_histogram:
            h = r.value
            out = (h.below + h.above) / h.total
            shown = f"{h.total} gradient elements, {out:.1%} outside [{h.edges[0]:g}, {h.edges[-1]:g}]"
        else:
            shown = f"{r.value:.6g}" + (f"  ({r.reason})" if math.isnan(r.value) and r.reason else "")
        print(f"  {name:<14} step {r.step:>4}: {shown}")
    print(f"records: {ck.run_dir}  (load with cockpit_log.read({str(ck.run_dir)!r}))")


if __name__ == "__main__":
    main()
