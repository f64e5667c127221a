"""HessMaxEV's solvers side by side on the example CNN: Hessian-vector products, time, agreement.

    python benchmarks/hessmaxev.py [--steps 60] [--every 5]

Trains the digits CNN of ``examples/train_cnn_digits.py`` (batch 128, SGD lr 0.1) once per solver
with the same seed, so both see the same parameters and batches (the cockpit does not change
training), and reports per solver the mean number of Hessian-vector products per reading, the mean
seconds per tracked step, and the largest relative difference between the two solvers' values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from train_cnn_digits import digits_loader, small_cnn  # noqa: E402

import cockpit_log  # noqa: E402


def run(method: str, steps: int, every: int) -> tuple[dict[int, float], list[float], float]:
    torch.manual_seed(0)
    model, loss_fn = small_cnn(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    quantity = cockpit_log.HessMaxEV(schedule=every, method=method)
    ck = cockpit_log.attach(model, loss_fn, opt, sink="memory", quantities=[quantity])
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        for x, y in digits_loader(128):
            if done == steps:
                break
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            done += 1
    elapsed = time.perf_counter() - t0
    ck.close()
    values = {r.step: r.value for r in ck.records}
    hvps = [r.info["hvps"] for r in ck.records]
    return values, hvps, elapsed / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args()
    results = {m: run(m, args.steps, args.every) for m in ("lanczos", "power")}
    (lv, _, _), (pv, _, _) = results["lanczos"], results["power"]
    diff = max(abs(lv[s] - pv[s]) / abs(lv[s]) for s in lv)
    print("| solver | readings | mean HVPs | min-max HVPs | s per tracked step (incl. training) |")
    print("|---|---|---|---|---|")
    for m, (values, hvps, per) in results.items():
        print(f"| {m} | {len(values)} | {statistics.mean(hvps):.1f} | {min(hvps):.0f}-{max(hvps):.0f} | {per:.3f} |")
    print(f"\nlargest relative difference lanczos vs power: {diff:.2e}")


if __name__ == "__main__":
    main()
