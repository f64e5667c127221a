"""One process of a data-parallel test run (and the single-process run it is compared with).

    python tests/ddp_worker.py --case mlp --rank 0 --world 2 --port 29512 --out DIR [--steps 3]
        [--uneven] [--sink memory|mlflow,memory] [--tracking-uri URI] [--experiment NAME]

Builds the same float64 model and the same global batches in every process (seeded); process ``r``
of ``P`` trains on its slice of each global batch of ``P * LOCAL`` samples, wrapped in
``DistributedDataParallel`` over gloo on 127.0.0.1; ``--world 1`` trains on the whole global batch
without DDP. Writes ``rank<r>.pkl`` with the records, the number of sinks and the communication
counters.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cockpit_log  # noqa: E402

LOCAL = 6  # samples per process and step
QUANTITIES = ["full", "CABS", "MeanGSNR", "EarlyStopping", "TICTrace"]


def build(case: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Model and the data of every step (global batches one after another)."""
    torch.manual_seed(0)
    n = 2 * LOCAL * 8
    if case == "mlp":
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        x = torch.randn(n, 5)
    elif case == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4)
        )
        x = torch.randn(n, 1, 6, 6)
    else:
        raise ValueError(case)
    y = torch.randint(0, 3 if case == "mlp" else 4, (n,))
    return model.double(), x.double(), y


def batches(x: torch.Tensor, y: torch.Tensor, step: int, rank: int, world: int, uneven_last: bool, steps: int):
    """Process ``rank``'s share of global batch ``step`` (the whole batch when ``world == 1``)."""
    start = step * 2 * LOCAL
    if world == 1:
        sl = slice(start, start + 2 * LOCAL)
    else:
        size = LOCAL
        lo = start + rank * LOCAL
        if uneven_last and step == steps - 1 and rank == world - 1:
            size = LOCAL - 3
        sl = slice(lo, lo + size)
    return x[sl], y[sl]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="mlp")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--port", type=int, default=29512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--uneven", action="store_true")
    parser.add_argument("--sink", default="memory")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--rank-diagnostics", action="store_true")
    parser.add_argument("--no-distributed", action="store_true", help="each process reads its local batch")
    parser.add_argument("--explicit", action="store_true", help="the explicit API (ck.backward / ck.step)")
    parser.add_argument("--clip", action="store_true", help="clip the gradient norm to 1e-3 before each step")
    args = parser.parse_args()
    torch.set_num_threads(1)

    world = args.world
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank, world_size=world
        )
    model, x, y = build(args.case)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.5)
    options = {}
    if "mlflow" in args.sink:
        options = {"mlflow": {"tracking_uri": args.tracking_uri, "experiment": args.experiment, "linger_s": 0.1}}
    ck = cockpit_log.attach(
        net,
        loss_fn,
        opt,
        sink=args.sink.split(","),
        quantities=QUANTITIES,
        sink_options=options,
        rank_diagnostics=args.rank_diagnostics,
        distributed=False if args.no_distributed else None,
        automatic=not args.explicit,
    )
    for step in range(args.steps):
        xb, yb = batches(x, y, step, args.rank, world, args.uneven, args.steps)
        opt.zero_grad()
        if args.explicit:
            losses = nn.functional.cross_entropy(net(xb), yb, reduction="none")
            with ck.backward(losses, batch=(xb, yb)):
                losses.mean().backward()
        else:
            loss_fn(net(xb), yb).backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
        opt.step()
        if args.explicit:
            ck.step()
    ck.close()
    result = {
        "records": ck.records,
        "sinks": len(ck.sinks),
        "communication": ck.communication,
        "params": [p.detach().clone() for p in model.parameters()],
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(os.path.join(args.out, f"rank{args.rank}.pkl"), "wb") as f:
        pickle.dump(result, f)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0 hosts the rendezvous store: leave together
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
