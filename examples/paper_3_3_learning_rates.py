"""Section 3.3 of the Cockpit paper: tuning the learning rate with alpha (Figure 5), on the digits.

Run:  python examples/paper_3_3_learning_rates.py [--steps 500] [--sink local] [--out cockpit-sweeps/digits-lr]

A grid of eight learning rates (``examples/sweep_digits.yaml``, W&B's sweep format) for the small
CNN on scikit-learn's digits (``examples/digits_trial.py``), run locally one after another with the
cockpit attached, then the study: validation accuracy against each run's median alpha, the runs
sorted by accuracy, and the reading. In the paper the best runs of every problem have a median
alpha > 0 (they overshoot the valley floor somewhat), and extreme learning rates hurt; the
reading says where this sweep's best run lies and which range to search next.

The same as one command:
``cockpit-log sweep examples/sweep_digits.yaml --train examples/digits_trial.py:train --threads 1``
(``--sink wandb`` for offline W&B runs, ``--sink mlflow`` for MLflow child runs under a parent run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from digits_trial import train  # noqa: E402

from cockpit_log.study import load_sweep_config, parse_sweep_config, run_sweep, study_runs  # noqa: E402


def main() -> None:
    """Run the sweep, print each trial and the reading, write the study report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per trial (default: the config's)")
    parser.add_argument("--sink", choices=("local", "wandb", "mlflow"), default="local")
    parser.add_argument("--out", default="cockpit-sweeps/digits-lr", help="the sweep directory")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and kind to a shared machine

    config = load_sweep_config(HERE / "sweep_digits.yaml")
    if args.steps is not None:
        raw = dict(config.raw)
        raw["parameters"] = dict(raw["parameters"]) | {"steps": {"value": args.steps}}
        config = parse_sweep_config(raw)
    result = run_sweep(config, train, sink=args.sink, out_dir=args.out, stream=sys.stdout)
    outcome = study_runs(
        result.runs, result.out_dir, metric=config.metric, targets=[result.backend], title="Learning rates on digits"
    )
    print()
    print(outcome.reading.headline())
    for paragraph in outcome.reading.paragraphs():
        print(f"  {paragraph}")
    print("report:", *[str(f) for f in outcome.files], *outcome.logged_to, sep="\n  ")


if __name__ == "__main__":
    main()
