"""Data-parallel training on CPU with the cockpit attached: the instruments read the global batch.

Run:  torchrun --nproc-per-node 2 examples/ddp_cpu.py [--steps 60] [--batch-size 32] [--run-dir DIR]
      (``python examples/ddp_cpu.py`` runs the same loop in one process, without DDP)

Each process trains the small digits CNN on its shard of scikit-learn's bundled digits
(``DistributedSampler``), wrapped in ``DistributedDataParallel`` over the gloo backend. ``attach()``
sees the DDP wrapper and reads every instrument over the global batch of ``P x batch-size`` samples
(one all-reduce per tracked step); only rank 0 writes the records (local run directory). The last
batch of an epoch may be shorter on some process: such steps are skipped on all processes.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import cockpit_log
from cockpit_log.demo import small_cnn


def digits_dataset() -> TensorDataset:
    """The 1797 8x8 digits scaled to [0, 1] (bundled with scikit-learn: nothing to download)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return TensorDataset(x, torch.tensor(data.target, dtype=torch.long))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32, help="samples per process and step")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--quantities", default="economy")
    parser.add_argument("--run-dir", default=None, help="rank 0's local run directory (default: a new one)")
    args = parser.parse_args()

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")  # torchrun provides rank, world size and the rendezvous address
    rank = dist.get_rank() if distributed else 0
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)

    model = small_cnn()
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    data = digits_dataset()
    sampler = DistributedSampler(data, seed=0) if distributed else None
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, shuffle=sampler is None)

    ck = cockpit_log.attach(
        net,
        loss_fn,
        opt,
        quantities=args.quantities,
        sink=["local", "memory"],
        sink_options={"local": {"run_dir": args.run_dir}} if args.run_dir else None,
    )
    step, epoch = 0, 0
    while step < args.steps:  # the user's loop, unchanged
        if sampler is not None:
            sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1
    ck.close()

    if rank == 0:
        last = {r.quantity: r for r in ck.records if r.is_scalar}
        world = dist.get_world_size() if distributed else 1
        print(f"{args.steps} steps on {world} process(es), global batch {world * args.batch_size}")
        for name in ("Loss", "GradNorm", "NormTest", "InnerTest", "Alpha"):
            if name in last:
                print(f"  {name:<10} step {last[name].step:>4}: {last[name].value:.6g}")
        if ck.communication is not None:
            c = ck.communication
            print(f"  all-reduces: {c['calls']} calls, {c['bytes'] / 1024:.1f} KiB in all")
        print(f"records: {ck.run_dir}")
    if distributed:
        dist.barrier()  # leave together: rank 0 hosts the rendezvous store
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
