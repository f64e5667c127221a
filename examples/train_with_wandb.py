"""Train the digits CNN with the cockpit streaming into Weights & Biases, offline (no account needed).

Run:  python examples/train_with_wandb.py [--steps 200] [--dir wandb-offline] [--chart-entity my-team]

The run is written to ``<dir>/wandb/offline-run-...``; the script ends by printing the command that
uploads it (``wandb sync ...``) and how to read the records back with ``cockpit_log.read``
(W&B's service finishes writing the run a moment after ``run.finish()`` returns).
To see the custom charts after syncing, create the chart presets once in your entity
(``cockpit-log-wandb charts --entity my-team``) and pass ``--chart-entity my-team``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import wandb
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from train_cnn_digits import digits_loader, small_cnn  # noqa: E402

import cockpit_log  # noqa: E402

QUANTITIES = "full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--dir", default="wandb-offline", help="where W&B writes the offline run")
    parser.add_argument("--project", default="cockpit-log-demo")
    parser.add_argument("--chart-entity", default=None, help="entity holding the cockpit chart presets")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    torch.manual_seed(0)
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    # Your own run, as usual; the sink logs into it (it would start one itself otherwise).
    run = wandb.init(
        project=args.project,
        mode="offline",
        dir=args.dir,
        config={"lr": args.lr, "batch_size": args.batch_size},
        settings=wandb.Settings(silent=True, x_disable_stats=True),
    )
    ck = cockpit_log.attach(
        model,
        loss_fn,
        opt,
        sink="wandb",
        quantities=QUANTITIES,
        sink_options={"wandb": {"chart_entity": args.chart_entity}},
    )
    batches = digits_loader(args.batch_size)
    for step in range(args.steps):  # the user's loop, unchanged
        x, y = next(batches)
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        if step % 10 == 0:  # the user's own logging keeps working beside the cockpit's
            run.log({"train/accuracy": (out.argmax(1) == y).float().mean().item()})
    ck.close()
    run_dir = Path(run.dir).parent
    run.finish()

    print(f"cockpit records of {args.steps} steps are in the offline run {run_dir}")
    print(f"read them back:  cockpit_log.read({str(run_dir)!r})")
    print(f"upload the run:  wandb sync {run_dir}")


if __name__ == "__main__":
    main()
