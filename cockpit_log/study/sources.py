"""The runs of a study, from where they are: a sweep directory, local runs, W&B offline runs, MLflow.

A SOURCE of ``cockpit-log study`` is one of:

- a sweep directory written by ``cockpit-log sweep`` (it holds ``sweep.json``);
- a local run directory (``records.jsonl``; parameters and metrics from ``trial.json`` if present);
- a W&B run directory (``run-<id>.wandb``, offline or the local copy of an online run): records
  from its transaction log, parameters from its config, metrics from its summary;
- a directory whose subdirectories are such runs (``wandb/``, ``cockpit-runs/``, ``trials/``);
- an MLflow parent run (``mlflow:<run_id>``, ``runs:/<run_id>``): its child runs; a run without
  children is one run; ``mlflow-experiment:<name or id>``: the runs of an experiment (parents left out).

Each source also says where its study report can be logged (:class:`LoadedSource.target`).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.local import RECORDS_FILE
from ..reading import read_local
from .config import Metric
from .runner import INDEX_FILE
from .runs import StudyRun, trial_summary
from .trackers import STUDY_JOB_TYPE, SWEEP_CONFIG_KEY, TRIAL_FILE, SweepBackend, WandbBackend, from_json_safe

__all__ = ["LoadedSource", "load_sources"]


@dataclass
class LoadedSource:
    """The runs found at one SOURCE, the metric it names (if any), and where to log a report."""

    runs: list[StudyRun]
    metric: Metric | None = None
    target: SweepBackend | None = None
    name: str | None = None
    out_dir: Path | None = None


def _is_wandb_dir(p: Path) -> bool:
    return p.is_dir() and any(p.glob("run-*.wandb"))


def _is_local_run(p: Path) -> bool:
    return (p / RECORDS_FILE).is_file()


def load_sources(sources: Sequence[str], tracking_uri: str | None = None) -> list[LoadedSource]:
    """Load every SOURCE (see the module docstring).

    Raises:
        FileNotFoundError: a source that is none of the above.
    """
    out: list[LoadedSource] = []
    for source in sources:
        text = str(source)
        if text.startswith(("mlflow:", "runs:/", "mlflow-experiment:")) or re.fullmatch(r"[0-9a-f]{32}", text):
            from .mlflow_trials import load_mlflow_source

            ref = text if not re.fullmatch(r"[0-9a-f]{32}", text) or Path(text).exists() else f"mlflow:{text}"
            out.append(load_mlflow_source(ref, tracking_uri))
        else:
            out.append(_load_path(Path(text)))
    return out


def _load_path(p: Path) -> LoadedSource:
    if (p / INDEX_FILE).is_file():
        return _load_index(p)
    if _is_local_run(p):
        return LoadedSource([_local_run(p)])
    if _is_wandb_dir(p):
        return _load_wandb([p])
    if p.is_dir():
        children = sorted(c for c in p.iterdir() if c.is_dir() and not c.is_symlink())
        wandb_runs = [c for c in children if _is_wandb_dir(c)]
        local_runs = [c for c in children if _is_local_run(c)]
        if wandb_runs or local_runs:
            loaded = _load_wandb(wandb_runs) if wandb_runs else LoadedSource([])
            loaded.runs += [_local_run(c) for c in local_runs]
            return loaded
        if (p / "wandb").is_dir():
            return _load_path(p / "wandb")
    raise FileNotFoundError(
        f"no runs at {p}: expected a sweep directory ({INDEX_FILE}), a local run ({RECORDS_FILE}), a W&B run "
        "directory (run-*.wandb), or a directory of such runs"
    )


def _load_index(p: Path) -> LoadedSource:
    data = from_json_safe(json.loads((p / INDEX_FILE).read_text(encoding="utf-8")))
    metric = Metric(data.get("metric", {}).get("name"), data.get("metric", {}).get("goal") or "minimize")
    runs = [
        StudyRun(
            name=t["name"],
            source=t["source"],
            params=t.get("params") or {},
            summary=t.get("summary") or {},
            metrics=t.get("metrics") or {},
            status=t.get("status", "finished"),
            error=t.get("error"),
        )
        for t in data.get("trials", [])
    ]
    target = _index_target(p, data, metric)
    return LoadedSource(runs, metric, target, name=data.get("name"), out_dir=p)


def _index_target(p: Path, data: dict[str, Any], metric: Metric) -> SweepBackend | None:
    tracker = data.get("tracker") or {}
    sink = data.get("sink")
    name = str(data.get("name") or "sweep")
    metric_dict = {"name": metric.name, "goal": metric.goal}
    if sink == "wandb":
        return WandbBackend(
            Path(tracker.get("dir") or p),
            name,
            metric_dict,
            project=tracker.get("project"),
            mode=tracker.get("mode") or "offline",
        )
    if sink == "mlflow":
        from .mlflow_trials import MlflowParentTarget

        return MlflowParentTarget(tracker["parent_run_id"], tracker.get("tracking_uri"))
    return None


def _local_run(p: Path) -> StudyRun:
    records = read_local(p)
    info: dict[str, Any] = {}
    if (p / TRIAL_FILE).is_file():
        info = from_json_safe(json.loads((p / TRIAL_FILE).read_text(encoding="utf-8")))
    return StudyRun(
        name=info.get("name") or p.name,
        source=str(p),
        params=info.get("params") or {},
        summary=trial_summary(records),
        metrics={k: float(v) for k, v in (info.get("metrics") or {}).items()},
        status=info.get("status", "finished"),
        error=info.get("error"),
    )


def _wandb_run_info(run_dir: Path) -> tuple[str, str]:
    """The display name (or id) and job type of a W&B run, from its transaction log."""
    from ..backends._wandb_read import iter_log

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in iter_log(run_dir):
            if rec.WhichOneof("record_type") == "run":
                return rec.run.display_name or rec.run.run_id, rec.run.job_type
    return run_dir.name, ""


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in data.items():
        if k.startswith(("_", "cockpit")):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def _load_wandb(run_dirs: list[Path]) -> LoadedSource:
    from ..backends._wandb_read import load_run_log
    from ..backends.wandb_sink import read_wandb

    runs: list[StudyRun] = []
    metric: Metric | None = None
    project, name = None, None
    for d in run_dirs:
        name_of_run, job_type = _wandb_run_info(d)
        if job_type == STUDY_JOB_TYPE:
            continue  # a study report, not a trial
        log = load_run_log(d)
        config = log.config
        sweep = config.get(SWEEP_CONFIG_KEY) or {}
        if isinstance(sweep, dict) and sweep.get("metric") and metric is None:
            m = sweep["metric"]
            metric = Metric(m.get("name"), m.get("goal") or "minimize")
            name = sweep.get("name")
        params = {k: v for k, v in config.items() if not k.startswith(("_", "cockpit"))}
        status = str(log.summary.get("cockpit_trial_status", "finished"))
        records = read_wandb(d)
        runs.append(
            StudyRun(
                name=name_of_run,
                source=str(d),
                params=params,
                summary=trial_summary(records),
                metrics=_numbers(log.summary),
                status=status,
                error=log.summary.get("cockpit_trial_error"),
            )
        )
        project = project or log.project
    target = None
    if run_dirs:
        base = run_dirs[0].parent.parent  # <dir>/wandb/offline-run-... -> <dir>
        metric_dict = {"name": metric.name, "goal": metric.goal} if metric else {}
        target = WandbBackend(base, name or "study", metric_dict, project=project or None, mode="offline")
    return LoadedSource(runs, metric, target, name=name)
