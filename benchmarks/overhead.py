"""Per-step overhead of the cockpit, as a ratio to the same loop without it, beside the reference implementation.

    python benchmarks/overhead.py [--quick] [--problems logreg,mnist_mlp,fmnist_2c2d,cifar10_3c3d]
        [--configs economy,business,full] [--intervals 1,4,16,64] [--impls ours,reference] [--no-memory]

Problems: the four DeepOBS networks of ``problems.py`` on random data of their shapes, batch size
128, SGD. Implementations: cockpit-log (``ours``) and, when ``cockpit-for-pytorch`` is installed
(``pip install -e ".[bench]" torch==2.13.0``), the reference implementation (``reference``).

**Time.** For each problem, implementation and configuration one subprocess runs the uninstrumented
loop and, per track interval ``k``, an instrumented loop; after a warm-up (two steps: the first
tracked step and the step after it) the two run interleaved in blocks of ``k`` steps (one track
period, so each block holds exactly one tracked step and the step after it; at ``k = 1`` blocks of
up to 4 steps), alternating, for at least ``--rounds`` rounds and while the cell's time budget
lasts. The ratio is the median over rounds of (instrumented block time / uninstrumented block
time). The machine is shared and noisy: only ratios measured in the same process mean anything.

**Memory.** Peak resident memory (max RSS) of a separate process per configuration that runs two
steps at interval 1 (the uninstrumented loop in its own process for the baseline). A watchdog kills
any child whose resident memory exceeds ``--rss-cap-gb`` (reported as ``>cap``).

Prints Markdown tables (ours, reference, ours/reference, added milliseconds per step, memory, the
issue's targets) and writes them to ``--out`` (default ``benchmarks/latest.md``, or
``benchmarks/latest-quick.md`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's cockpit_log, ahead of any installed copy
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from loops import make_loop, peer_available  # noqa: E402
from problems import PROBLEMS, num_params  # noqa: E402

CONFIGS = ("economy", "business", "full")

#: (problem, config, interval, bound on the ratio to the uninstrumented loop)
TIME_TARGETS = [
    ("cifar10_3c3d", "economy", 1, 1.5),
    ("fmnist_2c2d", "economy", 1, 1.5),
    ("mnist_mlp", "economy", 1, 3.0),
    ("logreg", "economy", 1, 2.5),
    ("cifar10_3c3d", "business", 1, 2.0),
    ("cifar10_3c3d", "full", 16, 1.5),
]
MEMORY_TARGETS = [("fmnist_2c2d", "economy", 1.5), ("cifar10_3c3d", "economy", 1.5)]


# ---------------------------------------------------------------------------------------- children
def _timed(step: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - t0


def child_time(args: argparse.Namespace) -> None:
    """Interleaved timing of one (problem, implementation, configuration) at every interval; JSON lines."""
    base = make_loop("ours", args.problem, args.batch_size, None, 1)
    _timed(base.step, 2)
    for k in [int(v) for v in args.intervals.split(",")]:
        inst = make_loop(args.impl, args.problem, args.batch_size, args.config, k)
        warm = _timed(inst.step, 2) / 2
        block = k if k > 1 else max(1, min(4, round(0.5 / max(warm, 1e-6))))
        ratios, base_times = [], []
        start = time.perf_counter()
        for r in range(args.max_rounds):
            tb = _timed(base.step, block)
            ti = _timed(inst.step, block)
            ratios.append(ti / tb)
            base_times.append(tb / block)
            if r + 1 >= args.rounds and time.perf_counter() - start > args.budget:
                break
        inst.close()
        out = {
            "interval": k,
            "base_ms": statistics.median(base_times) * 1e3,
            "ratio": statistics.median(ratios),
            "rounds": len(ratios),
            "block": block,
        }
        print(json.dumps(out), flush=True)


def child_memory(args: argparse.Namespace) -> None:
    """Peak RSS (MiB) of two steps of one loop at interval 1 (``--config none``: uninstrumented)."""
    config = None if args.config == "none" else args.config
    loop = make_loop(args.impl, args.problem, args.batch_size, config, 1)
    for _ in range(2):
        loop.step()
    loop.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak}), flush=True)


# ---------------------------------------------------------------------------------------- parent
def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(cmd: list[str], cap_mib: float, timeout: float) -> tuple[list[dict], str | None]:
    """Run a child, killing it above ``cap_mib`` resident or after ``timeout`` s; its JSON lines, or why it failed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, why = time.monotonic(), None
    while proc.poll() is None:
        if _rss_mib(proc.pid) > cap_mib:
            why = f">{cap_mib / 1024:.0f} GB"
        elif time.monotonic() - start > timeout:
            why = f">{timeout:.0f} s"
        if why:
            proc.kill()
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if why is None and proc.returncode != 0:
        why = "failed: " + (err.strip().splitlines() or ["?"])[-1][:80]
    return rows, why


def _child_cmd(mode: str, problem: str, impl: str, config: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, __file__, "--child", mode, "--problems", problem, "--impls", impl, "--configs", config,
        "--intervals", args.intervals, "--batch-size", str(args.batch_size), "--rounds", str(args.rounds),
        "--max-rounds", str(args.max_rounds), "--budget", str(args.budget), "--threads", str(args.threads),
    ]  # fmt: skip


def _fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×" if v < 10 else f"{v:.1f}×" if v < 100 else f"{v:.0f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="intervals 1 and 16, one round per cell")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--intervals", default=None, help="default 1,4,16,64 (quick: 1,16)")
    parser.add_argument("--impls", default=None, help="default ours,reference (reference only if installed)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: on a shared, loaded machine two threads "
        "make step times bimodal, a thread waiting for a descheduled partner)"
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="least rounds per cell (default 3, quick 1)")
    parser.add_argument("--max-rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=None, help="seconds per cell before stopping rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--rss-cap-gb", type=float, default=10.0)
    parser.add_argument("--cell-timeout", type=float, default=900.0, help="seconds per timing process")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=["time", "memory"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.intervals = args.intervals or ("1,16" if args.quick else "1,4,16,64")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.budget = args.budget if args.budget is not None else (5.0 if args.quick else 30.0)

    if args.child:
        args.problem, args.impl, args.config = args.problems, args.impls, args.configs
        (child_time if args.child == "time" else child_memory)(args)
        return

    problems = args.problems.split(",")
    configs = args.configs.split(",")
    intervals = [int(k) for k in args.intervals.split(",")]
    impls = args.impls.split(",") if args.impls else ["ours", *(["reference"] if peer_available() else [])]
    cap = args.rss_cap_gb * 1024
    cols = [f"{c}@{k}" for c in configs for k in intervals]
    began = time.perf_counter()

    ratio: dict[tuple[str, str, str, int], float | None] = {}
    note: dict[tuple[str, str, str, int], str] = {}
    base_ms: dict[str, float] = {}
    memory: dict[tuple[str, str, str], float | None] = {}
    memory_note: dict[tuple[str, str, str], str] = {}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}, "
        f"implementations: {', '.join(impls)}",
        flush=True,
    )
    for problem in problems:
        for impl in impls:
            for config in configs:
                t0 = time.perf_counter()
                rows, why = run_child(_child_cmd("time", problem, impl, config, args), cap, args.cell_timeout)
                got = {r["interval"]: r for r in rows}
                for k in intervals:
                    r = got.get(k)
                    ratio[(problem, impl, config, k)] = r["ratio"] if r else None
                    if r is None:
                        note[(problem, impl, config, k)] = why or "missing"
                    else:
                        base_ms.setdefault(problem, r["base_ms"])
                cells = " ".join(f"@{k}={_fmt_ratio(ratio[(problem, impl, config, k)])}" for k in intervals)
                print(f"  {problem} {impl} {config}: {cells}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if not args.no_memory:
            todo = [("ours", "none"), *((impl, c) for impl in impls for c in configs)]
            for impl, config in todo:
                rows, why = run_child(_child_cmd("memory", problem, impl, config, args), cap, args.cell_timeout)
                memory[(problem, impl, config)] = rows[0]["peak_mib"] if rows else None
                if not rows:
                    memory_note[(problem, impl, config)] = why or "missing"
            print(f"  {problem} memory done", flush=True)

    lines = [
        f"`{' '.join(['python', 'benchmarks/overhead.py', *sys.argv[1:]])}` — {time.strftime('%Y-%m-%d %H:%M')}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, batch size "
        f"{args.batch_size}, SGD; {time.perf_counter() - began:.0f} s in all.",
        "",
    ]

    def label(problem: str) -> str:
        return f"{PROBLEMS[problem][2]} ({num_params(problem) / 1e3:,.1f}k)"

    def cell(problem: str, impl: str, config: str, k: int) -> str:
        v = ratio.get((problem, impl, config, k))
        return _fmt_ratio(v) if v is not None else note.get((problem, impl, config, k), "—")

    for impl in impls:
        lines += [f"**{impl}**: step time as a multiple of the uninstrumented loop", ""]
        rows = [
            [label(p), f"{base_ms.get(p, float('nan')):.1f}"]
            + [cell(p, impl, c, k) for c in configs for k in intervals]
            for p in problems
        ]
        lines += [*_table(["problem (params)", "baseline ms/step", *cols], rows), ""]
    if "reference" in impls and "ours" in impls:
        lines += ["**ours / reference** (below 1: ours is cheaper)", ""]
        rows = []
        for p in problems:
            row = [label(p)]
            for c in configs:
                for k in intervals:
                    a, b = ratio.get((p, "ours", c, k)), ratio.get((p, "reference", c, k))
                    row.append(f"{a / b:.2f}" if a is not None and b is not None else "—")
            rows.append(row)
        lines += [*_table(["problem", *cols], rows), ""]
    lines += ["**added milliseconds per step** at interval 1 ((ratio − 1) × baseline)", ""]
    rows = []
    for p in problems:
        row = [label(p)]
        for impl in impls:
            for c in configs:
                v = ratio.get((p, impl, c, 1))
                row.append(f"{(v - 1) * base_ms[p]:.1f}" if v is not None and p in base_ms else "—")
        rows.append(row)
    lines += [*_table(["problem", *(f"{i} {c}" for i in impls for c in configs)], rows), ""]

    if memory:
        lines += ["**peak memory** (max RSS, MiB; × the uninstrumented process)", ""]
        rows = []
        for p in problems:
            base = memory.get((p, "ours", "none"))
            row = [label(p), f"{base:.0f}" if base else memory_note.get((p, "ours", "none"), "—")]
            for impl in impls:
                for c in configs:
                    v = memory.get((p, impl, c))
                    if v is None:
                        row.append(memory_note.get((p, impl, c), "—"))
                    else:
                        row.append(f"{v:.0f} ({v / base:.2f}×)" if base else f"{v:.0f}")
            rows.append(row)
        lines += [*_table(["problem", "uninstrumented", *(f"{i} {c}" for i in impls for c in configs)], rows), ""]

    lines += ["**targets** (ours)", ""]
    rows = []
    for p, c, k, bound in TIME_TARGETS:
        if p in problems and c in configs and k in intervals:
            v = ratio.get((p, "ours", c, k))
            ok = "—" if v is None else ("met" if v <= bound else "not met")
            rows.append([f"{PROBLEMS[p][2]} {c}@{k} time", f"≤ {bound}×", _fmt_ratio(v), ok])
    for p, c, bound in MEMORY_TARGETS:
        base, v = memory.get((p, "ours", "none")), memory.get((p, "ours", c))
        if base and v:
            rows.append([f"{PROBLEMS[p][2]} {c} peak memory", f"≤ {bound}×", f"{v / base:.2f}×", ok_(v / base, bound)])
    if "reference" in impls:
        worse = [
            f"{p} {c}@{k}"
            for p in problems
            for c in configs
            for k in intervals
            if ratio.get((p, "ours", c, k)) is not None
            and ratio.get((p, "reference", c, k)) is not None
            and ratio[(p, "ours", c, k)] >= ratio[(p, "reference", c, k)]  # type: ignore[operator]
        ]
        rows.append(
            ["every cell below the reference", "ours < reference", ", ".join(worse) or "all", ok_(len(worse), 0)]
        )
    lines += [*_table(["target", "bound", "measured", ""], rows), ""]

    text = "\n".join(lines)
    print()
    print(text)
    out = Path(args.out) if args.out else HERE / ("latest-quick.md" if args.quick else "latest.md")
    out.write_text("# Overhead benchmark (generated by benchmarks/overhead.py)\n\n" + text)
    print(f"written to {out}")


def ok_(value: float, bound: float) -> str:
    """``met`` when ``value <= bound``."""
    return "met" if value <= bound else "not met"


if __name__ == "__main__":
    main()
