"""Per-step overhead of the cockpit, as a ratio to the same loop without it, measured in one process.

    python benchmarks/overhead.py [--quick] [--problems mlp,cnn] [--configs economy] [--intervals 1,4]

Baseline and instrumented loops run interleaved (blocks of steps, alternating) after a warm-up, on
random data of each problem's shape, batch size 128 (SGD). The machine is shared and noisy: only
ratios measured in the same run mean anything. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import cockpit_log


class NullSink:
    """Discards records (measures the instruments, not a tracker)."""

    def write(self, records) -> None:  # noqa: ANN001
        pass

    def close(self) -> None:
        pass


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


def mnist_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 500), nn.ReLU(),
        nn.Linear(500, 100), nn.ReLU(), nn.Linear(100, 10),
    )  # fmt: skip


def cifar_3c3d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 5), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(64, 96, 3), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Flatten(), nn.Linear(128 * 3 * 3, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


PROBLEMS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (small_mlp, (1, 8, 8)),
    "cnn": (small_cnn, (1, 8, 8)),
    "mnist_mlp": (mnist_mlp, (1, 28, 28)),
    "cifar10_3c3d": (cifar_3c3d, (3, 32, 32)),
}


def make_loop(problem: str, config: str | None, interval: int, batch: int):
    build, shape = PROBLEMS[problem]
    torch.manual_seed(0)
    model = build()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = None
    if config is not None:
        ck = cockpit_log.attach(model, loss_fn, opt, sink=NullSink(), quantities=config, schedule=interval)
    gen = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(batch, *shape, generator=gen), torch.randint(0, 10, (batch,), generator=gen)) for _ in range(4)
    ]
    state = {"i": 0}

    def step() -> None:
        x, y = data[state["i"] % len(data)]
        state["i"] += 1
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step, ck


def timed(step: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def measure(problem: str, config: str, interval: int, batch: int, rounds: int, block: int) -> tuple[float, float]:
    base, _ = make_loop(problem, None, interval, batch)
    inst, ck = make_loop(problem, config, interval, batch)
    timed(base, 3)
    timed(inst, max(3, interval))
    b_times, i_times = [], []
    for _ in range(rounds):
        b_times.append(timed(base, block))
        i_times.append(timed(inst, block))
    ck.close()
    b, i = statistics.median(b_times), statistics.median(i_times)
    return b * 1e3, i / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems, few rounds (about a minute)")
    parser.add_argument("--problems", default=None)
    parser.add_argument("--configs", default="economy")
    parser.add_argument("--intervals", default="1")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    problems = args.problems.split(",") if args.problems else (["mlp", "cnn"] if args.quick else list(PROBLEMS))
    configs = args.configs.split(",")
    intervals = [int(k) for k in args.intervals.split(",")]
    rounds, block = (5, 4) if args.quick else (7, 8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}")
    header = "| problem | baseline ms/step | " + " | ".join(f"{c}@{k}" for c in configs for k in intervals) + " |"
    print(header)
    print("|" + "---|" * (2 + len(configs) * len(intervals)))
    for problem in problems:
        cells, base_ms = [], None
        for config in configs:
            for k in intervals:
                base_ms, ratio = measure(problem, config, k, args.batch_size, rounds, max(block, k))
                cells.append(f"{ratio:.2f}x")
        print(f"| {problem} | {base_ms:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
