"""Per-step cost of the MLflow sink as a ratio to the in-memory sink, and its end-of-run flush time.

    python benchmarks/mlflow_overhead.py [--tracking-uri http://127.0.0.1:5000] [--steps 600] [--image-every 0]

The example CNN (``examples/train_cnn_digits.py``: digits, batch 64, SGD) with ``economy`` at
every step, twice in one process: one cockpit with ``sink="memory"``, one with the MLflow sink
(default options). After a warm-up (and once the sink's worker has started), blocks of
``--block`` steps alternate between the two; the ratio is the median over rounds of the ratio of
the two blocks' median step times, so the load of a shared, noisy machine cancels.

Because wall-clock ratios on a shared machine are noisy, the cost is also accounted for directly:
the time ``write()`` takes on the training thread, and the CPU time of the sink's own threads in
the training process (sender, reply reader); ``1 + (write + threads) / step`` bounds the ratio
from above as if that thread time were taken from training entirely (it mostly is not: torch
releases the interpreter lock while it computes). The worker process's CPU time runs on another
core at lower priority and is reported separately. ``close s`` is the end-of-run flush
(``ck.close()``: backlog, summary, the last pictures, end of run). Without ``--tracking-uri``:
MLflow's embedded sqlite store in a temporary directory. Prints a Markdown table row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: cockpit_log and examples/

import cockpit_log  # noqa: E402
from cockpit_log.backends.mlflow_sink import MLflowSink  # noqa: E402
from examples.train_cnn_digits import digits_loader, small_cnn  # noqa: E402


class Loop:
    """One training loop with its own model, data and cockpit."""

    def __init__(self, sink: object) -> None:
        torch.manual_seed(0)
        self.model = small_cnn()
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.ck = cockpit_log.attach(self.model, self.loss_fn, self.opt, sink=sink, quantities="economy")
        self.batches = digits_loader(64)
        self.times: list[float] = []

    def run(self, n: int, record: bool = True) -> None:
        for _ in range(n):
            x, y = next(self.batches)
            t0 = time.perf_counter()
            self.opt.zero_grad()
            self.loss_fn(self.model(x), y).backward()
            self.opt.step()
            if record:
                self.times.append(time.perf_counter() - t0)


class TimedSink:
    """Forwards to the MLflow sink and adds up the time ``write()`` takes on the training thread."""

    def __init__(self, sink: MLflowSink) -> None:
        self.sink = sink
        self.write_seconds = 0.0
        self.writes = 0

    def write(self, records: object) -> None:
        t0 = time.perf_counter()
        self.sink.write(records)  # type: ignore[arg-type]
        self.write_seconds += time.perf_counter() - t0
        self.writes += 1

    def set_run_info(self, info: dict) -> None:
        self.sink.set_run_info(info)

    def close(self) -> None:
        self.sink.close()


def worker_cpu_seconds(sink: MLflowSink) -> float:
    """User + system CPU seconds of the sink's worker process so far (Linux /proc), NaN elsewhere."""
    proc = sink._worker._proc  # noqa: SLF001 - a measurement script
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, IndexError):
        return float("nan")


def sink_threads_cpu_seconds() -> float:
    """CPU seconds of the sink's threads in this process (sender and worker-reply reader; Linux /proc)."""
    total = 0.0
    for th in threading.enumerate():
        if th.name.startswith("cockpit-log-mlflow") and th.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{th.native_id}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError):
                return float("nan")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--steps", type=int, default=600, help="measured steps per loop")
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--image-every", type=int, default=1000, help="the sink's image_every (default: its default)")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="cockpit-mlflow-bench-")
    uri = args.tracking_uri or f"sqlite:///{tmp}/mlflow.db"
    sink = MLflowSink(tracking_uri=uri, experiment="cockpit-overhead", spool_dir=tmp, image_every=args.image_every)
    # the sink's own threads (sender, reply reader) are measured apart from the training thread
    timed = TimedSink(sink)
    memory, tracked = Loop("memory"), Loop(timed)
    memory.run(args.warmup, record=False)
    tracked.run(args.warmup, record=False)
    sink.flush(300)  # the worker has started (MLflow imported) and the run exists: measure the steady state
    cpu0, threads0 = worker_cpu_seconds(sink), sink_threads_cpu_seconds()
    write0, writes0 = timed.write_seconds, timed.writes
    ratios = []
    rounds = 0
    while len(memory.times) < args.steps:
        order = (memory, tracked) if rounds % 2 == 0 else (tracked, memory)
        for loop in order:
            loop.run(args.block)
        ratios.append(statistics.median(tracked.times[-args.block :]) / statistics.median(memory.times[-args.block :]))
        rounds += 1
    cpu = worker_cpu_seconds(sink) - cpu0
    threads = sink_threads_cpu_seconds() - threads0
    write_ms = (timed.write_seconds - write0) / max(timed.writes - writes0, 1) * 1e3
    memory.ck.close()
    t0 = time.perf_counter()
    tracked.ck.close()
    flush = time.perf_counter() - t0

    m, t = memory.times, tracked.times
    kind = "server" if uri.startswith("http") else "embedded sqlite"
    step_ms = statistics.median(m) * 1e3
    threads_ms = threads / len(t) * 1e3
    print("| tracking | image_every | steps | memory sink ms/step | ratio (median of block ratios) | ratio of means | "
          "write() ms/step | sink threads CPU ms/step | bound 1 + (write + threads) / step | "
          "worker process CPU ms/step | close s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    if os.environ.get("COCKPIT_BENCH_DEBUG"):
        print("slowest memory ms:", [round(x * 1e3, 1) for x in sorted(m)[-8:]])
        print("slowest tracked ms:", [round(x * 1e3, 1) for x in sorted(t)[-8:]])
        print("sink stats:", sink.stats, "spooled:", sink.spool_path)
    print(
        f"| {kind} | {args.image_every} | {len(t)} | {step_ms:.1f} | {statistics.median(ratios):.3f} | "
        f"{statistics.fmean(t) / statistics.fmean(m):.3f} | {write_ms:.3f} | {threads_ms:.3f} | "
        f"{1 + (write_ms + threads_ms) / step_ms:.3f} | {cpu / len(t) * 1e3:.2f} | {flush:.2f} |"
    )


if __name__ == "__main__":
    main()
