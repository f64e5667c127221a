"""Train a small CNN on scikit-learn's bundled digits for 100 steps with the cockpit attached.

Run:  python examples/train_cnn_digits.py [--steps 100] [--run-dir cockpit-runs/digits]

Prints the last reading of every quantity and where the records are; reload them with
``cockpit_log.read(run_dir)``.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import cockpit_log
from cockpit_log.demo import digits_loader, small_cnn  # shared with `cockpit-log demo`


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
