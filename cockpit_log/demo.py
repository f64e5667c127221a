"""The demo: a small CNN trained on scikit-learn's bundled digits with the cockpit attached.

``cockpit-log demo`` calls :func:`run_demo`; ``examples/train_cnn_digits.py`` shares
:func:`digits_loader` and :func:`small_cnn`. The digits (1797 real 8x8 images that ship with
scikit-learn) need no download.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor, nn

from .cockpit import attach
from .demo_trackers import TrackerRun, default_sink, open_tracker_run
from .presets import resolve_quantities
from .progress import LIVE_READINGS, ProgressLine
from .quantities import Quantity
from .records import Record
from .schedules import at_steps, every, log_spaced
from .view import write_view

__all__ = [
    "DEMO_QUANTITIES",
    "DEMO_STEPS",
    "DEMO_TRACK_POINTS",
    "DemoResult",
    "DemoSettings",
    "demo_quantities",
    "demo_schedules",
    "digits_loader",
    "run_demo",
    "small_cnn",
]

DEMO_QUANTITIES = "full"
DEMO_STEPS = 500
DEMO_TRACK_POINTS = 100  # log_spaced(steps - 1, DEMO_TRACK_POINTS): dense early, sparse late
DEMO_ALPHA_READINGS = 100  # Alpha evenly spread, so "whole run" and "last 10 %" compare like with like


def digits_loader(batch_size: int, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches of the 1797 8x8 digits, scaled to [0, 1], from their own generator."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            yield x[idx], y[idx]


def small_cnn() -> nn.Module:
    """Two conv layers and two linear layers (2.6 k parameters) for 8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def demo_quantities(spec: str | None) -> tuple[list[str], str | None]:
    """The demo's quantity list from ``--quantities`` (comma-separated presets and names), and a notice.

    ``None`` means :data:`DEMO_QUANTITIES`. The notice is reserved for settings worth a remark
    (none at present).

    Raises:
        ValueError: an unknown or unavailable name that the user asked for.
    """
    if spec is None:
        return [DEMO_QUANTITIES], None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("--quantities is empty; give a preset (economy) or quantity names, comma-separated")
    resolve_quantities(names)  # raises ValueError naming what is wrong
    return names, None


@dataclass
class DemoSettings:
    """Options of ``cockpit-log demo``."""

    steps: int = DEMO_STEPS
    quantities: str | None = None
    sink: str | None = None
    out_dir: Path = Path("cockpit-demo")
    tracking_uri: str | None = None
    batch_size: int = 64
    lr: float = 0.1
    seed: int = 0
    track_points: int = DEMO_TRACK_POINTS
    threads: int = 1  # the model is tiny: one thread is as fast, and far faster on a busy machine


@dataclass
class DemoResult:
    """What the demo did and where it put things."""

    records: list[Record]
    quantities: list[str]
    tracker: TrackerRun
    files: list[Path] = field(default_factory=list)
    panels: dict[str, str] = field(default_factory=dict)
    notice: str | None = None
    warnings: list[str] = field(default_factory=list)
    train_s: float = 0.0
    render_s: float = 0.0
    final_loss: float = math.nan


def demo_schedules(names: list[str], steps: int, track_points: int = DEMO_TRACK_POINTS) -> list[Quantity]:
    """Quantity instances for the demo: ``log_spaced(steps - 1, track_points)`` plus the last step
    for all but Alpha, which is tracked every ``steps // DEMO_ALPHA_READINGS`` steps so that its
    whole-run and last-10 % distributions have readings spread evenly over the run."""
    quantities = resolve_quantities(names)
    # the last step is added explicitly: log_spaced(last) can miss ``last`` by floating-point rounding
    log_schedule = at_steps(log_spaced(steps - 1, track_points).steps | {steps - 1})
    for q in quantities:
        if q.name == "Alpha":
            q.schedule = every(max(1, steps // DEMO_ALPHA_READINGS))
        else:
            q.schedule = log_schedule
    return quantities


def _live(records: list[Record], start: int, readings: dict[str, float]) -> int:
    """Update ``readings`` with the finite scalar records from index ``start`` on; the new length."""
    for r in records[start:]:
        if r.quantity in LIVE_READINGS and r.is_scalar and math.isfinite(float(r.value)):
            readings[r.quantity] = float(r.value)
    return len(records)


def run_demo(settings: DemoSettings, stream: TextIO | None = None) -> DemoResult:
    """Train the small CNN on digits with the cockpit attached, then write the cockpit view.

    Tracks ``settings.quantities`` (default :data:`DEMO_QUANTITIES`) on the schedules of
    :func:`demo_schedules`, logs to ``settings.sink`` (default :func:`default_sink`) and keeps the
    records in memory for the view, which goes to ``<out_dir>/cockpit-view.png`` (and the
    layer-wise grid beside it). Warnings raised while training are collected in the result
    rather than printed through the progress line.

    Raises:
        ValueError: bad settings (steps, quantities, sink).
    """
    stream = stream if stream is not None else sys.stdout
    if settings.steps < 2:
        raise ValueError(f"--steps must be at least 2, got {settings.steps}")
    quantities, notice = demo_quantities(settings.quantities)
    out_dir = Path(settings.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = open_tracker_run(settings.sink or default_sink(), out_dir, settings.tracking_uri)

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads))
    try:
        return _train_and_plot(settings, quantities, notice, tracker, out_dir, stream)
    finally:
        torch.set_num_threads(threads)


def _train_and_plot(
    settings: DemoSettings,
    quantities: list[str],
    notice: str | None,
    tracker: TrackerRun,
    out_dir: Path,
    stream: TextIO,
) -> DemoResult:
    torch.manual_seed(settings.seed)
    model = small_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
    batches = digits_loader(settings.batch_size, settings.seed)
    progress = ProgressLine(settings.steps, stream)
    readings: dict[str, float] = {}
    seen = 0
    loss_value = math.nan
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            ck = attach(
                model,
                loss_fn,
                opt,
                sink=[tracker.sink, "memory"],
                quantities=demo_schedules(quantities, settings.steps, settings.track_points),
                sink_options=tracker.sink_options,
            )
            with ck:
                for step in range(settings.steps):  # an ordinary training loop
                    x, y = next(batches)
                    opt.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    opt.step()
                    loss_value = loss.item()
                    seen = _live(ck.records, seen, readings)
                    progress.update(step, loss_value, readings)
    finally:
        progress.close()
        tracker.finish()
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    title = f"cockpit-log demo: small CNN on digits, {settings.steps} steps, {'+'.join(quantities)}"
    view = write_view(ck.records, out_dir / "cockpit-view.png", title=title)
    render_s = time.perf_counter() - t0
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    return DemoResult(
        records=ck.records,
        quantities=quantities,
        tracker=tracker,
        files=[f.resolve() for f in view.files],
        panels=view.panels,
        notice=notice,
        warnings=messages,
        train_s=train_s,
        render_s=render_s,
        final_loss=loss_value,
    )
