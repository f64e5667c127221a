"""Where the demo's records go: a local run directory, MLflow's embedded store, or an offline W&B run.

The demo opens the tracker's run itself (the MLflow and W&B sinks log into an active run), so
it knows where the run is and can say how to open it afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.local import default_run_dir

__all__ = ["DEMO_EXPERIMENT", "SINKS", "TrackerRun", "default_sink", "open_tracker_run", "sink_available"]

SINKS = ("mlflow", "local", "wandb")
DEMO_EXPERIMENT = "cockpit-log-demo"


def sink_available(name: str) -> bool:
    """Whether the sink ``name`` and the tracker it writes to are installed (without importing them)."""
    if name == "local":
        return True
    return (
        importlib.util.find_spec(f"cockpit_log.backends.{name}_sink") is not None
        and importlib.util.find_spec(name) is not None
    )


def default_sink() -> str:
    """``"mlflow"`` (MLflow's embedded local store) when the MLflow sink is installed, else ``"local"``."""
    return "mlflow" if sink_available("mlflow") else "local"


@dataclass
class TrackerRun:
    """An open run of the demo's tracker.

    Attributes:
        sink: the sink name to attach with.
        sink_options: options for ``attach(..., sink_options=...)``.
        where: ``(label, location)`` lines saying where the records are.
        open_commands: commands that open the records (first: the main one).
        source: what ``cockpit-log plot``/``show`` take to read the run back.
        finish: ends the tracker's run; called after the cockpit is closed.
    """

    sink: str
    sink_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    where: list[tuple[str, str]] = field(default_factory=list)
    open_commands: list[str] = field(default_factory=list)
    source: str = ""
    finish: Callable[[], None] = lambda: None


def open_tracker_run(sink: str, out_dir: Path, tracking_uri: str | None = None) -> TrackerRun:
    """Start a run of tracker ``sink`` for the demo, with its files under ``out_dir`` where it has any.

    Raises:
        ValueError: ``sink`` is not one of :data:`SINKS` or is not installed.
    """
    if sink not in SINKS:
        raise ValueError(f"unknown sink {sink!r}; choose one of {', '.join(SINKS)}")
    if not sink_available(sink):
        raise ValueError(
            f"the {sink} sink is not installed in this version of cockpit-log "
            f"(pip install 'cockpit-log[{sink}]'); use --sink local"
        )
    if sink == "mlflow":
        return _mlflow_run(out_dir, tracking_uri)
    if sink == "wandb":
        return _wandb_run(out_dir)
    run_dir = default_run_dir(out_dir / "runs").resolve()
    return TrackerRun(
        "local",
        {"local": {"run_dir": run_dir}},
        where=[("records (local store)", str(run_dir))],
        open_commands=[f"cockpit-log show {run_dir}"],
        source=str(run_dir),
    )


def _mlflow_run(out_dir: Path, tracking_uri: str | None) -> TrackerRun:
    import mlflow

    embedded = tracking_uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
    if embedded:
        tracking_uri = f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
    uri = tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the sink reads MLflow's usual settings
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(DEMO_EXPERIMENT)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        artifacts = None
        if embedded:
            artifacts = (out_dir / "mlartifacts").resolve().as_uri()
        elif uri.startswith("sqlite:///"):  # beside the database, not in ./mlruns of whatever the cwd is
            artifacts = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        experiment_id = mlflow.create_experiment(DEMO_EXPERIMENT, artifact_location=artifacts)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"digits-cnn-{time.strftime('%Y%m%d-%H%M%S')}")
    run_id = run.info.run_id
    if uri.startswith(("sqlite:", "file:", "/", ".")) or "://" not in uri:
        ui = f"mlflow ui --backend-store-uri {uri}"
    else:
        ui = f"open {uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return TrackerRun(
        "mlflow",
        where=[("MLflow run", f"{run_id} (experiment {DEMO_EXPERIMENT!r})"), ("MLflow tracking URI", uri)],
        open_commands=[ui, f"cockpit-log show mlflow:{run_id} --tracking-uri {uri}"],
        source=f"mlflow:{run_id}",
        finish=mlflow.end_run,
    )


def _wandb_run(out_dir: Path) -> TrackerRun:
    import wandb

    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_MODE"] = "offline"
    name = f"digits-cnn-{time.strftime('%Y%m%d-%H%M%S')}"
    run = wandb.init(project=DEMO_EXPERIMENT, dir=str(out_dir.resolve()), mode="offline", name=name)
    run_dir = Path(run.dir).parent
    return TrackerRun(
        "wandb",
        where=[("W&B offline run", str(run_dir))],
        open_commands=[f"wandb sync {run_dir}", f"cockpit-log show {run_dir}"],
        source=str(run_dir),
        finish=run.finish,
    )
