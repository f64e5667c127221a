"""A tiny training function for sweep tests: an MLP on generated 3-class data, 30 SGD steps."""

from __future__ import annotations

import torch
from torch import nn

from cockpit_log.study import Trial

QUANTITIES = "economy"  # becomes "full" once the curvature issue lands
STEPS = 30


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """384 points in 8 dimensions, labelled by a random linear teacher (3 classes)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(384, 8, generator=gen)
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(1)
    return x, y


def train(trial: Trial) -> dict[str, float]:
    """Train with ``trial.config["lr"]``; returns the loss and accuracy on 128 held-out points."""
    x, y = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=float(trial.config["lr"]))
    # no cockpit view image per tracker run: drawing it is the slowest part of these tiny runs
    no_view = {"wandb": {"view": False}, "mlflow": {"view": False, "image_every": None}}
    ck = trial.attach(model, loss_fn, opt, quantities=QUANTITIES, schedule=2, sink_options=no_view)
    batches = torch.Generator().manual_seed(1)
    for _ in range(int(trial.config.get("steps", STEPS))):
        idx = torch.randint(256, (32,), generator=batches)
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    ck.close()
    with torch.no_grad():
        out = model(x[256:])
        accuracy = (out.argmax(1) == y[256:]).float().mean().item()
        return {"val_loss": loss_fn(out, y[256:]).item(), "val_accuracy": accuracy}


def train_logging(trial: Trial) -> None:
    """Like :func:`train`, but logs the metrics with ``trial.log`` and returns nothing."""
    trial.log(train(trial))


def train_failing(trial: Trial) -> float:
    """Fails for learning rates above 0.5, after attaching (to test that the sweep goes on)."""
    if float(trial.config["lr"]) > 0.5:
        raise RuntimeError("learning rate too large for this test")
    return train(trial)["val_loss"]
