"""A training function for learning-rate sweeps: the small CNN on scikit-learn's digits.

``train(trial)`` is what ``cockpit-log sweep`` (and ``wandb.agent`` through
``cockpit_log.study.agent_function``) calls once per trial::

    cockpit-log sweep examples/sweep_digits.yaml --train examples/digits_trial.py:train --threads 1

It trains on 1500 of the 1797 digits with plain SGD at ``trial.config["lr"]`` (other keys:
``steps``, ``batch_size``, ``momentum``, ``seed``, ``track_every``), with the cockpit attached
through ``trial.attach``, and returns the accuracy and loss on the 297 held-out digits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cockpit_log.demo import small_cnn
from cockpit_log.study import Trial

QUANTITIES = "economy"  # becomes "full" once the curvature issue lands
DEFAULTS: dict[str, Any] = {"lr": 0.1, "steps": 500, "batch_size": 64, "momentum": 0.0, "seed": 0, "track_every": 5}
VALIDATION = 297


def digits_split(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training and validation images (scaled to [0, 1]) and labels: a fixed random split of the digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[:-VALIDATION], perm[-VALIDATION:]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def train(trial: Trial) -> dict[str, float]:
    """Train the small CNN with the trial's settings; returns validation accuracy and loss."""
    cfg = DEFAULTS | trial.config
    x_train, y_train, x_val, y_val = digits_split()
    torch.manual_seed(int(cfg["seed"]))
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg["lr"]), momentum=float(cfg["momentum"]))
    ck = trial.attach(model, loss_fn, opt, quantities=QUANTITIES, schedule=int(cfg["track_every"]))
    batches = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
    for _ in range(int(cfg["steps"])):  # the usual loop
        idx = torch.randint(len(x_train), (int(cfg["batch_size"]),), generator=batches)
        opt.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        opt.step()
    ck.close()
    with torch.no_grad():
        out = model(x_val)
        return {
            "val_accuracy": (out.argmax(1) == y_val).float().mean().item(),
            "val_loss": loss_fn(out, y_val).item(),
        }
