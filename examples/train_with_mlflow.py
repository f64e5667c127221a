"""Train the digits CNN with the MLflow sink at two learning rates, then query the runs by their instruments.

Run:  python examples/train_with_mlflow.py [--steps 100] [--lrs 0.01,0.1] [--tracking-uri URI]

Without ``--tracking-uri`` (and without ``MLFLOW_TRACKING_URI``), MLflow's embedded default is
used: a sqlite file ``mlflow.db`` in the working directory, no server. Browse the runs with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``: metrics ``cockpit/...``, histogram pictures
and the raw records under the run's artifacts ``cockpit/``.

Each run is the user's own MLflow run (``mlflow.start_run``); the sink logs into it and leaves it
open. Afterwards ``mlflow.search_runs`` selects runs by the cockpit's run summary, e.g. the runs
whose median alpha is positive (steps that overshoot the minimum along their direction).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_cnn_digits import digits_loader, small_cnn  # noqa: E402

import cockpit_log  # noqa: E402

EXPERIMENT = "cockpit-digits"
QUANTITIES = "full"


def train(lr: float, steps: int, batch_size: int = 64) -> str:
    """One training run inside an MLflow run; returns the run id."""
    torch.manual_seed(0)
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with mlflow.start_run(run_name=f"digits lr={lr:g}") as run:
        mlflow.log_param("lr", lr)  # the user's own params sit beside the cockpit's (cockpit/...)
        ck = cockpit_log.attach(model, loss_fn, opt, sink="mlflow", quantities=QUANTITIES)
        batches = digits_loader(batch_size)
        for _ in range(steps):  # the user's loop, unchanged
            x, y = next(batches)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        ck.close()  # inside the run: sends the backlog, the summary and the last pictures
    return run.info.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lrs", default="0.01,0.1", help="comma-separated learning rates, one run each")
    parser.add_argument("--tracking-uri", default=None, help="default: MLflow's own setting (embedded sqlite)")
    args = parser.parse_args()
    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    print(f"tracking URI: {mlflow.get_tracking_uri()}")

    run_ids = [train(float(lr), args.steps) for lr in args.lrs.split(",")]

    columns = {
        "tags.mlflow.runName": "run",
        "metrics.cockpit/summary/alpha_median": "alpha median",
        "metrics.cockpit/summary/alpha_median_last10": "alpha median, last 10%",
        "metrics.cockpit/summary/loss_last": "last loss",
    }
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string=f"attributes.run_id IN {tuple(run_ids)!r}")
    print("\nthese runs:")
    print(runs[list(columns)].rename(columns=columns).to_string(index=False))

    query = "metrics.`cockpit/summary/alpha_median` > 0"
    overshooting = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string=query)
    print(f"\nruns in {EXPERIMENT!r} with {query}:")
    if overshooting.empty:
        print("  none")
    else:
        print(overshooting[list(columns)].rename(columns=columns).to_string(index=False))

    records = cockpit_log.read(f"mlflow:{run_ids[-1]}")
    print(f"\n{len(records)} records read back from run {run_ids[-1]} (cockpit_log.read('mlflow:<run id>'))")


if __name__ == "__main__":
    main()
