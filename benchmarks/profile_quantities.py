"""Where the time of a tracked step goes: each quantity alone, and the top operators of a configuration.

    python benchmarks/profile_quantities.py [--problem cifar10_3c3d] [--config economy] [--steps 4] [--ops 25]

Part 1 times each quantity of ``full`` alone at every step (interleaved with the uninstrumented
loop, as in ``overhead.py``) and prints the milliseconds it adds per step. Part 2 runs ``--config``
under ``torch.profiler`` and prints the operators by self CPU time. One torch thread by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from loops import make_loop  # noqa: E402

from cockpit_log.presets import FULL  # noqa: E402


def _timed(step, n: int) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def per_quantity(problem: str, batch: int, steps: int, rounds: int) -> None:
    """Milliseconds each quantity of ``full`` adds to a step when it is the only one, at interval 1."""
    base = make_loop("ours", problem, batch, None, 1)
    _timed(base.step, 2)
    print(f"{problem}: ms added per step by each quantity alone (interval 1)")
    for name in FULL:
        inst = make_loop("ours", problem, batch, [name], 1)  # type: ignore[arg-type]
        _timed(inst.step, 2)
        diffs, bases = [], []
        for _ in range(rounds):
            tb = _timed(base.step, steps)
            ti = _timed(inst.step, steps)
            diffs.append(ti - tb)
            bases.append(tb)
        inst.close()
        added, baseline = statistics.median(diffs) * 1e3, statistics.median(bases) * 1e3
        print(f"  {name:14s} {added:9.1f} ms   (baseline {baseline:.1f})")


def operators(problem: str, batch: int, config: str, steps: int, top: int) -> None:
    """Top operators by self CPU time over ``steps`` tracked steps of ``config``."""
    loop = make_loop("ours", problem, batch, config, 1)
    loop.step()
    loop.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            loop.step()
    loop.close()
    print(f"{problem} {config}: top operators over {steps} tracked steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="cifar10_3c3d")
    parser.add_argument("--config", default="economy")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ops", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-quantities", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_quantities:
        per_quantity(args.problem, args.batch_size, args.steps, args.rounds)
    if args.ops:
        operators(args.problem, args.batch_size, args.config, args.steps, args.ops)


if __name__ == "__main__":
    main()
