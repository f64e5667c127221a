"""Sweeps and studies in MLflow: child runs under one parent run, and reading them back.

The runner starts a parent run named after the sweep (tags ``cockpit_sweep.metric``,
``cockpit_sweep.goal``, ``cockpit_sweep.method``; the configuration as the artifact
``sweep-config.json``) and one child run per trial with ``mlflow.start_run(nested=True)``, whose
parameters are the trial's (flattened: ``optimizer.lr``). The MLflow sink logs the cockpit's
records into the active run, the child. At the end of a trial its metrics (returned or logged) and
``cockpit_train_loss_final`` are logged in the child, its status in the tag ``cockpit_trial_status``.
The study report goes to the parent run as artifacts under ``cockpit-study/``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.tracking import MlflowClient

from .config import Metric
from .runs import StudyRun, flatten, trial_summary

if TYPE_CHECKING:
    from .analysis import StudyReading
    from .sources import LoadedSource
    from .trial import Trial

__all__ = ["MlflowBackend", "MlflowParentTarget", "MlflowTracker", "load_mlflow_source"]

ARTIFACT_DIR = "cockpit-study"
TAG_METRIC, TAG_GOAL, TAG_METHOD = "cockpit_sweep.metric", "cockpit_sweep.goal", "cockpit_sweep.method"
TAG_STATUS, TAG_ERROR = "cockpit_trial_status", "cockpit_trial_error"
PARENT_TAG = "mlflow.parentRunId"
#: metric and param name prefixes that are not the user's (the sink's keys and settings, its summary, system metrics)
OWN_PREFIXES = ("cockpit", "system/")


def _user_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not k.startswith(OWN_PREFIXES)}


def _log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float]) -> None:
    from mlflow.entities import Metric as MlflowMetric

    now = int(time.time() * 1000)
    batch = [MlflowMetric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))]
    if batch:
        client.log_batch(run_id, metrics=batch)


class MlflowTracker:
    """A trial as an MLflow child run (active while the training function runs)."""

    def __init__(self, run: Any, client: MlflowClient) -> None:
        self.run_id = run.info.run_id
        self.client = client
        self.source = f"mlflow:{self.run_id}"

    def sink_spec(self) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """The MLflow sink, which logs into the active run: this child run."""
        return ["mlflow"], {}

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log the metrics into the child run."""
        _log_metrics(self.client, self.run_id, metrics)

    def logged_metrics(self) -> dict[str, float]:
        """The child run's metrics that are not the cockpit's (e.g. ``mlflow.log_metric("val_loss", ...)``)."""
        return _user_metrics(self.client.get_run(self.run_id).data.metrics)

    def finish(self, trial: Trial, status: str, error: str | None) -> None:
        """Log ``cockpit_train_loss_final`` and the status, and end the child run."""
        _log_metrics(self.client, self.run_id, {"cockpit_train_loss_final": trial.summary()["train_loss_final"]})
        self.client.set_tag(self.run_id, TAG_STATUS, status)
        if error:
            self.client.set_tag(self.run_id, TAG_ERROR, error[:5000])
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run("FINISHED" if status == "finished" else "FAILED")


class MlflowParentTarget:
    """Logs a study report onto an existing MLflow run (a sweep's parent run) as artifacts."""

    name = "mlflow"

    def __init__(self, run_id: str, tracking_uri: str | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.description = f"MLflow run {run_id}"

    def log_study(self, files: list[Path], reading: StudyReading) -> str | None:
        """The files as artifacts under ``cockpit-study/``; the best run and next range as tags."""
        client = MlflowClient(self.tracking_uri)
        for f in files:
            client.log_artifact(self.run_id, str(f), ARTIFACT_DIR)
        tags = {"cockpit_study.best_run": reading.best.name if reading.best else ""}
        if reading.best is not None:
            tags["cockpit_study.best_run_id"] = reading.best.source.removeprefix("mlflow:")
        if reading.next_range is not None:
            tags["cockpit_study.next_lr"] = f"[{reading.next_range[0]:.3g}, {reading.next_range[1]:.3g}]"
        for k, v in tags.items():
            client.set_tag(self.run_id, k, v)
        return f"MLflow run {self.run_id} (artifacts {ARTIFACT_DIR}/)"

    def close(self) -> None:
        """Nothing to end."""

    def index_info(self) -> dict[str, Any]:
        """The run and the tracking URI."""
        return {"parent_run_id": self.run_id, "tracking_uri": self.tracking_uri}


class MlflowBackend(MlflowParentTarget):
    """A parent run for the sweep, one nested child run per trial."""

    def __init__(
        self,
        out_dir: Path,
        sweep_name: str,
        metric: Mapping[str, Any],
        tracking_uri: str | None = None,
        experiment: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        uri = mlflow.get_tracking_uri()
        experiment_id = mlflow.set_experiment(experiment or sweep_name).experiment_id
        nested = mlflow.active_run() is not None  # inside a run of the user's: the sweep goes under it
        parent = mlflow.start_run(run_name=sweep_name, experiment_id=experiment_id, nested=nested)
        super().__init__(parent.info.run_id, uri)
        self.experiment_id = experiment_id
        self.client = MlflowClient(uri)
        self.description = f"MLflow child runs of parent run {self.run_id} (experiment {experiment or sweep_name!r})"
        tags = {TAG_METRIC: metric.get("name") or "", TAG_GOAL: metric.get("goal") or "minimize"}
        tags[TAG_METHOD] = str((params or {}).get("method", ""))
        mlflow.set_tags(tags)
        if params:
            mlflow.log_dict(dict(params), "sweep-config.json")
        self._ended = False

    def start_trial(self, name: str, index: int, params: Mapping[str, Any]) -> MlflowTracker:
        """A child run of the parent, active until the trial finishes."""
        run = mlflow.start_run(run_name=name, experiment_id=self.experiment_id, nested=True)
        flat = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in flatten(params).items()}
        if flat:
            mlflow.log_params(flat)
        return MlflowTracker(run, self.client)

    def close(self) -> None:
        """End the parent run."""
        if self._ended:
            return
        self._ended = True
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run()
        else:
            self.client.set_terminated(self.run_id)

    def index_info(self) -> dict[str, Any]:
        """The parent run, its experiment and the tracking URI."""
        return {"parent_run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": self.tracking_uri}


def _param(value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def _study_run(run: Any, uri: str) -> StudyRun:
    from ..backends.mlflow_sink import read_mlflow

    run_id = run.info.run_id
    try:
        records = read_mlflow(run_id, uri)
    except FileNotFoundError:
        records = []  # a trial that failed before attaching: no cockpit records
    status = run.data.tags.get(TAG_STATUS) or ("finished" if run.info.status == "FINISHED" else "failed")
    return StudyRun(
        name=run.info.run_name or run_id,
        source=f"mlflow:{run_id}",
        params={k: _param(v) for k, v in run.data.params.items() if not k.startswith(OWN_PREFIXES)},
        summary=trial_summary(records),
        metrics=_user_metrics(run.data.metrics),
        status=status,
        error=run.data.tags.get(TAG_ERROR),
    )


def _all_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def load_mlflow_source(ref: str, tracking_uri: str | None = None) -> LoadedSource:
    """The runs of ``mlflow:<run_id>``/``runs:/<run_id>`` (a parent run's children, or the run itself)
    or ``mlflow-experiment:<name or id>`` (the runs of an experiment that are no other run's parent).

    Raises:
        FileNotFoundError: no such run or experiment.
    """
    from .sources import LoadedSource

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    uri = mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    if ref.startswith("mlflow-experiment:"):
        key = ref.removeprefix("mlflow-experiment:")
        exp = client.get_experiment_by_name(key)
        if exp is None and key.isdigit():
            exp = client.get_experiment(key)
        if exp is None:
            raise FileNotFoundError(f"no MLflow experiment {key!r} at {uri}")
        runs = _all_runs(client, [exp.experiment_id])
        parents = {r.data.tags.get(PARENT_TAG) for r in runs} - {None}
        trials = sorted((r for r in runs if r.info.run_id not in parents), key=lambda r: r.info.start_time)
        metric = _metric_from_tags([r for r in runs if r.info.run_id in parents])
        return LoadedSource([_study_run(r, uri) for r in trials], metric, None, name=exp.name)
    run_id = ref.removeprefix("mlflow:").removeprefix("runs:/").strip("/").split("/")[0]
    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MLflow raises its own exception for a missing run
        raise FileNotFoundError(f"no MLflow run {run_id} at {uri}: {err}") from err
    children = _all_runs(client, [run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{run_id}'")
    children.sort(key=lambda r: r.info.start_time)
    target = MlflowParentTarget(run_id, uri)
    if not children:
        return LoadedSource([_study_run(run, uri)], _metric_from_tags([run]), target, name=run.info.run_name)
    studied = [_study_run(r, uri) for r in children]
    return LoadedSource(studied, _metric_from_tags([run]), target, name=run.info.run_name)


def _metric_from_tags(runs: list[Any]) -> Metric | None:
    for run in runs:
        name = run.data.tags.get(TAG_METRIC)
        if name:
            return Metric(name, run.data.tags.get(TAG_GOAL) or "minimize")
    return None
