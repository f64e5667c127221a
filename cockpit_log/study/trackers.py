"""Where a sweep's trials go: local run directories, W&B runs (offline by default), MLflow child runs.

A :class:`SweepBackend` starts one :class:`~cockpit_log.study.trial.TrialTracker` per trial and,
at the end, logs the study report where the tracker keeps it:

- ``local``: ``<out>/trials/<trial>/`` (the local store's ``meta.json`` and ``records.jsonl``,
  plus ``trial.json`` with the trial's parameters, summary and metrics); the report stays in ``<out>``.
- ``wandb``: one W&B run per trial (``config`` = the parameters, ``group`` = the sweep's name,
  files under ``<out>/wandb``), the summary and metrics in its ``run.summary``; the report
  becomes a run of its own (``job_type="cockpit-study"``) in the same project.
- ``mlflow``: :mod:`cockpit_log.study.mlflow_trials`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..backends.local import default_run_dir

if TYPE_CHECKING:
    from .analysis import StudyReading
    from .trial import Trial, TrialTracker

__all__ = [
    "SINKS",
    "TRIAL_FILE",
    "LocalBackend",
    "LocalTracker",
    "SweepBackend",
    "WandbBackend",
    "WandbTracker",
    "json_safe",
    "make_backend",
]

SINKS = ("local", "wandb", "mlflow")
TRIAL_FILE = "trial.json"
SWEEP_CONFIG_KEY = "cockpit_sweep"
STUDY_JOB_TYPE = "cockpit-study"
WANDB_SETTINGS = {"x_disable_stats": True, "x_disable_machine_info": True, "console": "off", "silent": True}


def json_safe(data: Any) -> Any:
    """``data`` with non-finite floats as the strings ``"NaN"``/``"Infinity"``/``"-Infinity"`` (strict JSON)."""
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if math.isnan(data) else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, Mapping):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def from_json_safe(data: Any) -> Any:
    """Inverse of :func:`json_safe` for the values it writes."""
    if isinstance(data, str) and data in ("NaN", "Infinity", "-Infinity"):
        return float(data.replace("Infinity", "inf"))
    if isinstance(data, dict):
        return {k: from_json_safe(v) for k, v in data.items()}
    if isinstance(data, list):
        return [from_json_safe(v) for v in data]
    return data


class SweepBackend(Protocol):
    """Starts the trials of one sweep in a tracker and logs its study report there."""

    name: str
    description: str

    def start_trial(self, name: str, index: int, params: Mapping[str, Any]) -> TrialTracker:
        """The tracker of a new trial."""

    def log_study(self, files: list[Path], reading: StudyReading) -> str | None:
        """Log the study report's files; returns where (for the user), or None."""

    def close(self) -> None:
        """End what the backend opened (e.g. the MLflow parent run)."""

    def index_info(self) -> dict[str, Any]:
        """What the sweep index (``sweep.json``) needs to find the runs again."""


# ---------------------------------------------------------------------------------------------- local
class LocalTracker:
    """A trial in a local run directory; ``trial.json`` holds its parameters, summary and metrics."""

    def __init__(self, run_dir: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.params = dict(params or {})
        self.source = str(self.run_dir)
        self._metrics: dict[str, float] = {}

    @classmethod
    def new(cls, name: str = "trial") -> LocalTracker:
        """A tracker in a new run directory under ``$COCKPIT_LOG_DIR`` (default ``./cockpit-runs``)."""
        return cls(default_run_dir(os.environ.get("COCKPIT_LOG_DIR", "cockpit-runs")))

    def sink_spec(self) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """The local sink in the trial's run directory."""
        return ["local"], {"local": {"run_dir": self.run_dir}}

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Keep the metrics for ``trial.json``."""
        self._metrics.update(metrics)

    def logged_metrics(self) -> dict[str, float]:
        """The local store has no metric API of its own: nothing."""
        return {}

    def finish(self, trial: Trial, status: str, error: str | None) -> None:
        """Write ``trial.json``."""
        data = {
            "name": trial.name,
            "index": trial.index,
            "params": trial.config,
            "summary": trial.summary(),
            "metrics": trial.all_metrics(),
            "status": status,
            "error": error,
        }
        (self.run_dir / TRIAL_FILE).write_text(json.dumps(json_safe(data), indent=2, default=str), encoding="utf-8")


class LocalBackend:
    """Trials as local run directories under ``<out>/trials``."""

    name = "local"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.description = f"local run directories in {out_dir / 'trials'}"

    def start_trial(self, name: str, index: int, params: Mapping[str, Any]) -> LocalTracker:
        """A local run directory ``<out>/trials/<name>``."""
        return LocalTracker(self.out_dir / "trials" / name, params)

    def log_study(self, files: list[Path], reading: StudyReading) -> str | None:
        """The report's files already are in the sweep directory."""
        return None

    def close(self) -> None:
        """Nothing to end."""

    def index_info(self) -> dict[str, Any]:
        """Nothing beyond the trials' directories."""
        return {}


# ---------------------------------------------------------------------------------------------- W&B
class WandbTracker:
    """A trial as a W&B run: parameters in its config, summary and metrics in ``run.summary``."""

    def __init__(self, run: Any, owns: bool = True) -> None:
        self.run = run
        self.owns = owns
        self.source = str(Path(run.dir).parent)

    def sink_spec(self) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """The W&B sink logging into this run."""
        return ["wandb"], {"wandb": {"run": self.run}}

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Metrics go to the run summary (what W&B's sweeps and tables sort by)."""
        self.run.summary.update(dict(metrics))

    def logged_metrics(self) -> dict[str, float]:
        """Numbers in the run summary that the training function logged (``wandb.log``/``run.summary``)."""
        out: dict[str, float] = {}
        for key in list(self.run.summary.keys()):
            if key.startswith(("_", "cockpit")):
                continue
            value = self.run.summary.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
        return out

    def finish(self, trial: Trial, status: str, error: str | None) -> None:
        """Write the final training loss and status into the summary; finish the run if the trial started it."""
        summary = trial.summary()
        extra = {"cockpit_train_loss_final": summary.get("train_loss_final", math.nan), "cockpit_trial_status": status}
        if error:
            extra["cockpit_trial_error"] = error
        self.run.summary.update(extra)
        if self.owns:
            self.run.finish(exit_code=0 if status == "finished" else 1)


class WandbBackend:
    """Each trial a W&B run in ``project`` (files under ``<out>``), grouped by the sweep's name."""

    name = "wandb"

    def __init__(
        self,
        out_dir: Path,
        sweep_name: str,
        metric: Mapping[str, Any],
        project: str | None = None,
        entity: str | None = None,
        mode: str = "offline",
    ) -> None:
        self.out_dir = out_dir
        self.sweep_name = sweep_name
        self.metric = dict(metric)
        self.project = project or "cockpit-log-sweeps"
        self.entity = entity
        self.mode = mode
        self.description = f"W&B runs ({mode}) in project {self.project!r}, group {sweep_name!r}, under {out_dir}"

    def _init(self, **options: Any) -> Any:
        import wandb

        given = {"project": self.project, "entity": self.entity, "dir": str(self.out_dir), "mode": self.mode}
        settings = wandb.Settings(**WANDB_SETTINGS)
        return wandb.init(**{k: v for k, v in given.items() if v is not None}, settings=settings, **options)

    def start_trial(self, name: str, index: int, params: Mapping[str, Any]) -> WandbTracker:
        """A new W&B run with the trial's parameters as its config."""
        import wandb

        if wandb.run is not None:
            raise RuntimeError("a W&B run is active; a local sweep starts one W&B run per trial (finish yours first)")
        config = dict(params) | {SWEEP_CONFIG_KEY: {"name": self.sweep_name, "metric": self.metric, "index": index}}
        run = self._init(name=name, group=self.sweep_name, job_type="sweep-trial", config=config)
        return WandbTracker(run)

    def log_study(self, files: list[Path], reading: StudyReading) -> str | None:
        """A run of its own (``job_type="cockpit-study"``) with the plot, the table and the reading."""
        run = self._init(name=f"study-{self.sweep_name}", group=self.sweep_name, job_type=STUDY_JOB_TYPE)
        try:
            where = log_study_to_wandb(run, files, reading)
        finally:
            run.finish()
        return where

    def close(self) -> None:
        """Nothing to end: each trial finished its run."""

    def index_info(self) -> dict[str, Any]:
        """The project and where the runs' files are."""
        return {"project": self.project, "entity": self.entity, "mode": self.mode, "dir": str(self.out_dir)}


def log_study_to_wandb(run: Any, files: list[Path], reading: StudyReading) -> str:
    """Log a study report into a W&B run: ``cockpit_study/plot`` (image), ``cockpit_study/runs``
    (table), the reading in the summary (``cockpit_study_reading``, ``cockpit_study_best_run``,
    ``cockpit_study_next_lr_min``/``_max``), and the Markdown file saved with the run."""
    import wandb

    png = next((f for f in files if f.suffix == ".png"), None)
    markdown = next((f for f in files if f.suffix == ".md"), None)
    columns, rows = reading.table()
    row: dict[str, Any] = {"cockpit_study/runs": wandb.Table(columns=columns, data=rows)}
    if png is not None:
        row["cockpit_study/plot"] = wandb.Image(str(png), caption=reading.headline())
    run.log(row)
    summary: dict[str, Any] = {"cockpit_study_reading": reading.text()}
    if reading.best is not None:
        summary["cockpit_study_best_run"] = reading.best.name
    if reading.next_range is not None:
        summary["cockpit_study_next_lr_min"], summary["cockpit_study_next_lr_max"] = reading.next_range
    run.summary.update(summary)
    if markdown is not None:
        run.save(str(markdown), base_path=str(markdown.parent), policy="now")
    return f"W&B run {run.name!r} ({Path(run.dir).parent})"


def make_backend(
    sink: str,
    out_dir: Path,
    sweep_name: str,
    metric: Mapping[str, Any],
    *,
    project: str | None = None,
    entity: str | None = None,
    wandb_mode: str = "offline",
    tracking_uri: str | None = None,
    experiment: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> SweepBackend:
    """The backend for ``sink`` (one of :data:`SINKS`).

    Raises:
        ValueError: an unknown sink.
        ImportError: the tracker is not installed.
    """
    if sink == "local":
        return LocalBackend(out_dir)
    if sink == "wandb":
        import wandb  # noqa: F401 - fail early with ImportError when W&B is missing

        return WandbBackend(out_dir, sweep_name, metric, project=project, entity=entity, mode=wandb_mode)
    if sink == "mlflow":
        from .mlflow_trials import MlflowBackend

        return MlflowBackend(
            out_dir, sweep_name, metric, tracking_uri=tracking_uri, experiment=experiment, params=params
        )
    raise ValueError(f"unknown sink {sink!r}; choose one of {', '.join(SINKS)}")


def stamp() -> str:
    """A time stamp for directory and run names."""
    return time.strftime("%Y%m%d-%H%M%S")
