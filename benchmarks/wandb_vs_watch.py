"""The W&B sink with ``economy`` against ``wandb.watch(model, log="all", log_freq=1)``: per-step cost and bytes.

    python benchmarks/wandb_vs_watch.py [--steps 200] [--block 10]

The digits CNN of the examples (batch 64, SGD with momentum, real data) in four set-ups, each with
its own model, optimizer and offline W&B run (``reinit="create_new"``), all in one process, run
interleaved in blocks of ``--block`` steps so that the load of this shared machine hits all alike:
the plain loop that logs its loss with ``run.log`` (baseline); the same with
``wandb.watch(log="all", log_freq=1)``; the same with the cockpit (``economy``) streaming into the W&B
sink; the cockpit with a sink that discards records (the instruments alone). A block of the W&B
sink ends with ``sink.flush()``, so its time includes all of the background logging (an upper
bound: in training that work overlaps the next steps). Per-step cost: median over blocks of the
block's wall time per step, and of its CPU time (training thread, plus the sink's worker thread for
the W&B sink; less sensitive to the load of other processes; W&B's own threads and service process
are not counted in either). Bytes: everything each run wrote (transaction log and media files)
once W&B has finished writing it. Only ratios measured in the same run mean much.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).parent.parent))
from train_cnn_digits import digits_loader, small_cnn  # noqa: E402

import cockpit_log  # noqa: E402

QUANTITIES = "economy"


class NullSink:
    """Discards records (measures the instruments, not a tracker)."""

    def write(self, records: Any) -> None:
        pass

    def close(self) -> None:
        pass


def run_bytes(run_dir: Path, timeout: float = 60.0) -> int:
    """Bytes of an offline run directory once its transaction log holds the exit record."""
    from cockpit_log.backends._wandb_read import load_run_log

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not load_run_log(run_dir).finished:
        time.sleep(0.1)
    return sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file() and "logs" not in f.parts)


class Setup:
    """One configuration: model, optimizer, W&B run, and what watches the loop."""

    def __init__(self, kind: str, root: Path) -> None:
        import wandb

        torch.manual_seed(0)
        self.kind = kind
        self.model = small_cnn()
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        settings = wandb.Settings(silent=True, x_disable_stats=True, x_disable_machine_info=True, console="off")
        # wandb.watch logs into the global wandb.run: its run is made first and stays global; the
        # others are extra runs of the same process (reinit="create_new")
        reinit = {} if kind == "watch" else {"reinit": "create_new"}
        self.run = wandb.init(project="bench", name=kind, mode="offline", dir=str(root), settings=settings, **reinit)
        self.ck: Any = None
        self.sink: Any = None
        if kind == "watch":
            self.run.watch(self.model, log="all", log_freq=1)
        elif kind == "cockpit+wandb":
            from cockpit_log.backends.wandb_sink import WandbSink

            self.sink = WandbSink(run=self.run)
            deliver = self.sink._sender._deliver  # count the worker thread's CPU time too

            def timed(batch: Any, deliver: Any = deliver) -> None:
                t0 = time.thread_time()
                try:
                    deliver(batch)
                finally:
                    self.worker_cpu += time.thread_time() - t0

            self.sink._sender._deliver = timed
            self.ck = cockpit_log.attach(self.model, self.loss_fn, self.opt, sink=self.sink, quantities=QUANTITIES)
        elif kind == "cockpit+null":
            self.ck = cockpit_log.attach(self.model, self.loss_fn, self.opt, sink=NullSink(), quantities=QUANTITIES)
        self.batches = digits_loader(64)
        self.per_step: list[float] = []
        self.cpu_per_step: list[float] = []
        self.worker_cpu = 0.0
        self.close_s = 0.0

    def block(self, steps: int) -> None:
        """Train ``steps`` steps; note the wall time per step (background logging included)."""
        t0, cpu0, worker0 = time.perf_counter(), time.thread_time(), self.worker_cpu
        for _ in range(steps):
            x, y = next(self.batches)
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.run.log({"loss": loss.item()})
        cpu = time.thread_time() - cpu0
        if self.sink is not None:
            self.sink.flush()
        self.per_step.append((time.perf_counter() - t0) / steps)
        self.cpu_per_step.append((cpu + self.worker_cpu - worker0) / steps)

    def close(self) -> Path:
        """Close the cockpit and finish the run; returns the run directory."""
        t0 = time.perf_counter()
        if self.ck is not None:
            self.ck.close()
        self.close_s = time.perf_counter() - t0
        run_dir = Path(self.run.dir).parent
        self.run.finish()
        return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    kinds = ["watch", "plain", "cockpit+wandb", "cockpit+null"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WANDB_DATA_DIR"] = str(Path(tmp) / "data")
        setups = [Setup(kind, Path(tmp)) for kind in kinds]
        for _ in range(args.steps // args.block):
            for setup in setups:
                setup.block(args.block)
        dirs = [setup.close() for setup in setups]
        nbytes = {setup.kind: run_bytes(d) for setup, d in zip(setups, dirs)}
    ms = {setup.kind: 1e3 * statistics.median(setup.per_step[1:]) for setup in setups}  # first block: warm-up
    cpu = {setup.kind: 1e3 * statistics.median(setup.cpu_per_step[1:]) for setup in setups}
    print(f"{args.steps} steps of the digits CNN (batch 64), offline W&B, interleaved blocks of {args.block} steps\n")
    print("| configuration | wall ms/step | x plain loop | CPU ms/step | bytes logged | close s |")
    print("|---|---|---|---|---|---|")
    for setup in setups:
        k = setup.kind
        print(f"| {k} | {ms[k]:.2f} | {ms[k] / ms['plain']:.2f} | {cpu[k]:.2f} | {nbytes[k]:,} | {setup.close_s:.2f} |")
    print()
    for name, t in (("wall", ms), ("CPU", cpu)):
        ours, watch, plain = t["cockpit+wandb"], t["watch"], t["plain"]
        print(f"{name}: per-step cost, cockpit+W&B sink / wandb.watch: {ours / watch:.2f}")
        over = (ours - plain) / (watch - plain)
        print(f"{name}: overhead over the plain loop, cockpit+W&B sink / wandb.watch: {over:.2f}")
        print(f"{name}: the W&B sink's share (minus the cockpit alone): {ours - t['cockpit+null']:.2f} ms/step")
    extra = (nbytes["cockpit+wandb"] - nbytes["plain"]) / (nbytes["watch"] - nbytes["plain"])
    print(f"bytes logged beyond the plain loop's, cockpit+W&B sink / wandb.watch: {extra:.2f}")


if __name__ == "__main__":
    main()
