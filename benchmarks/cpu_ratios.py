"""CPU-time ratios of economy/business/full (every step, every 16) to the plain loop on the example CNN.

    python benchmarks/cpu_ratios.py [--blocks 6]

One torch thread; each configuration is its own model and optimizer (same initial weights), stepped
in interleaved blocks of 32 steps after a warm-up on random data of the digits shape (batch 128, SGD);
the ratio of median CPU seconds per step (process time, which a busy shared machine disturbs far less
than wall time) to the uninstrumented loop. Also prints HessMaxEV's number of Hessian-vector products.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loops import NullSink  # noqa: E402

import cockpit_log  # noqa: E402
from cockpit_log.demo import small_cnn  # noqa: E402

CONFIGS = [(None, 1), ("economy", 1), ("economy", 16), ("business", 1), ("business", 16), ("full", 1), ("full", 16)]


def make(config: str | None, interval: int) -> tuple[Callable[[], None], cockpit_log.MemorySink | None]:
    torch.manual_seed(0)
    model, loss_fn = small_cnn(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    memory = cockpit_log.MemorySink() if config else None
    if config:
        cockpit_log.attach(model, loss_fn, opt, sink=[NullSink(), memory], quantities=config, schedule=interval)
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(128, 1, 8, 8, generator=gen), torch.randint(0, 10, (128,), generator=gen)) for _ in range(16)]
    state = {"i": 0}

    def step() -> None:
        x, y = data[state["i"] % len(data)]
        state["i"] += 1
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runners = {c: make(*c) for c in CONFIGS}
    for step, _ in runners.values():
        for _ in range(20):
            step()
    times: dict[tuple[str | None, int], list[float]] = {c: [] for c in CONFIGS}
    for _ in range(args.blocks):
        for c, (step, _) in runners.items():
            t0 = time.process_time()
            for _ in range(32):
                step()
            times[c].append((time.process_time() - t0) / 32)
    base = statistics.median(times[(None, 1)])
    print(f"baseline {base * 1e3:.2f} ms CPU per step (1 thread)")
    print("| " + " | ".join(f"{c}@{k}" for c, k in CONFIGS[1:]) + " |")
    print("|" + "---|" * (len(CONFIGS) - 1))
    print("| " + " | ".join(f"{statistics.median(times[c]) / base:.2f}x" for c in CONFIGS[1:]) + " |")
    memory = runners[("full", 1)][1]
    hvps = [r.info["hvps"] for r in memory.records if r.quantity == "HessMaxEV"] if memory else []
    if hvps:
        mean, low, high = statistics.mean(hvps), min(hvps), max(hvps)
        print(f"HessMaxEV: {mean:.1f} Hessian-vector products on average ({low:.0f}-{high:.0f})")


if __name__ == "__main__":
    main()
