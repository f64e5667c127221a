"""Overhead of the instruments under DistributedDataParallel, beside the same ratio in one process.

    python benchmarks/ddp_overhead.py [--problems mnist_mlp,cifar10_3c3d] [--config economy]
        [--intervals 1,16] [--local-batch 64] [--rounds 5]

For each problem, two processes (gloo on 127.0.0.1, one torch thread each) train a plain DDP loop
and an instrumented DDP loop (``attach()`` on the DDP model, records discarded), alternating in
blocks of ``k`` steps after a warm-up; the ratio is the median over rounds of (instrumented block
time / plain block time) on rank 0. The single-process ratio runs the same two loops without DDP,
on the local batch, in one process. Also reports the cockpit's all-reduce calls and bytes per
tracked step (``ck.communication``, per process), beside the bytes of DDP's own gradient all-reduce.
The machine is shared and noisy: only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from loops import NullSink  # noqa: E402
from problems import make_data, make_model  # noqa: E402
from torch import nn  # noqa: E402


def _loop(problem: str, batch: int, config: str | None, interval: int, ddp: bool, seed: int):  # noqa: ANN202
    import cockpit_log

    torch.manual_seed(seed)
    model = make_model(problem)
    net = nn.parallel.DistributedDataParallel(model) if ddp else model
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    ck = None
    if config is not None:
        ck = cockpit_log.attach(net, loss_fn, opt, sink=NullSink(), quantities=config, schedule=interval)
    data = make_data(problem, batch)
    state = {"i": 0}

    def step() -> None:
        x, y = data[state["i"] % len(data)]
        state["i"] += 1
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    return step, ck


def _ratio(args: argparse.Namespace, ddp: bool) -> dict:
    base, _ = _loop(args.problem, args.local_batch, None, 1, ddp, 0)
    out = {}
    for k in [int(v) for v in args.intervals.split(",")]:
        inst, ck = _loop(args.problem, args.local_batch, args.config, k, ddp, 0)
        for _ in range(2):
            base()
            inst()
        block = max(k, 4)
        ratios = []
        before = dict(ck.communication or {"calls": 0, "bytes": 0}) if ck is not None else {}
        tracked = 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(block):
                base()
            t1 = time.perf_counter()
            for _ in range(block):
                inst()
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
            tracked += -(-block // k)
        comm = ck.communication if ck is not None else None
        out[k] = {
            "ratio": statistics.median(ratios),
            "calls_per_tracked": (comm["calls"] - before["calls"]) / tracked if comm else None,
            "bytes_per_tracked": (comm["bytes"] - before["bytes"]) / tracked if comm else None,
        }
        ck.close()
    return out


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    if args.rank >= 0:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank, world_size=2)
        result = _ratio(args, ddp=True)
        dist.barrier()
        dist.destroy_process_group()
        if args.rank != 0:
            return
    else:
        result = _ratio(args, ddp=False)
    print("RESULT " + json.dumps(result))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(problem: str, args: argparse.Namespace, ranks: list[int]) -> dict:
    port = _free_port()
    base = [sys.executable, __file__, "--child", "--problems", problem, "--port", str(port)]
    opts = ["--config", args.config, "--intervals", args.intervals, "--local-batch", str(args.local_batch)]
    opts += ["--rounds", str(args.rounds)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([*base, "--rank", str(r), *opts], stdout=subprocess.PIPE, text=True, env=env) for r in ranks
    ]
    outs = [p.communicate(timeout=3600)[0] for p in procs]
    for line in outs[0].splitlines():
        if line.startswith("RESULT "):
            return {int(k): v for k, v in json.loads(line[7:]).items()}
    raise RuntimeError(f"no result from {problem}: {outs[0][-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="mnist_mlp,cifar10_3c3d")
    parser.add_argument("--config", default="economy")
    parser.add_argument("--intervals", default="1,16")
    parser.add_argument("--local-batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.problem = args.problems
        child(args)
        return
    intervals = [int(v) for v in args.intervals.split(",")]
    lines = [
        f"`python benchmarks/ddp_overhead.py` — {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, "
        f"2 processes (gloo) × 1 thread, local batch {args.local_batch}, {args.config}, {args.rounds} rounds",
        "",
        "| problem (params) | interval | ratio, 1 process (batch b) | ratio, DDP 2 processes (2·b) "
        "| cockpit all-reduces per tracked step | cockpit bytes per tracked step | DDP gradient bytes per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for problem in args.problems.split(","):
        single = _run(problem, args, [-1])
        ddp = _run(problem, args, [0, 1])
        params = sum(p.numel() for p in make_model(problem).parameters())
        for k in intervals:
            d = ddp[k]
            lines.append(
                f"| {problem} ({params / 1e3:,.1f}k) | {k} | {single[k]['ratio']:.2f}× | {d['ratio']:.2f}× | "
                f"{d['calls_per_tracked']:.2f} | {d['bytes_per_tracked'] / 1024:,.1f} KiB "
                f"| {params * 4 / 1024:,.0f} KiB |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
