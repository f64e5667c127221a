"""Run a sweep locally, one trial after another: ``cockpit-log sweep CONFIG.yaml --train module:function``.

Each trial gets a :class:`~cockpit_log.study.trial.Trial` whose ``attach`` streams into the chosen
tracker (:mod:`cockpit_log.study.trackers`). After each trial the sweep index
``<out>/sweep.json`` is rewritten (parameters, summary, metrics, status and where each run is),
so a sweep stopped half-way can still be studied. A trial that raises is recorded as failed and
the sweep goes on; the runner closes any cockpit the training function left open.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .config import SweepConfig, load_sweep_config, parse_sweep_config
from .runs import FINAL_LOSS, StudyRun, flatten
from .trackers import SweepBackend, json_safe, make_backend, stamp
from .trial import Trial, metrics_from_result

__all__ = [
    "INDEX_FILE",
    "SweepResult",
    "TrainFunction",
    "execute_trial",
    "import_function",
    "run_sweep",
    "trial_name",
]

INDEX_FILE = "sweep.json"
TrainFunction = Callable[[Trial], Any]


def import_function(spec: str) -> TrainFunction:
    """The function named by ``module:function`` (the module importable from the current
    directory, like ``python -m``) or ``path/to/file.py:function``.

    Raises:
        ValueError: ``spec`` is not of that form, or names no callable.
        ImportError: the module cannot be imported.
    """
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"--train takes module:function or path/to/file.py:function, got {spec!r}")
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ImportError(f"no such file: {path}")
        name = f"_cockpit_train_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
        loader_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"{module_name} has no function {func_name!r}")
    return func


def varying_keys(trials: list[dict[str, Any]]) -> list[str]:
    """The (flattened) parameter names whose values differ between ``trials``."""
    flat = [flatten(t) for t in trials]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def trial_name(index: int, params: Mapping[str, Any], keys: list[str] | None = None) -> str:
    """``trial-003-lr0.1``: the index and up to three of the parameters ``keys`` (default: all), file-name safe."""
    flat = flatten(params)
    parts = []
    for k in (keys if keys is not None else list(flat))[:3]:
        v = flat.get(k)
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{k.split('.')[-1]}{text}")
    tail = "-".join(parts)
    safe = "".join(c if c.isalnum() or c in "._-=" else "_" for c in tail)[:60]
    return f"trial-{index:03d}" + (f"-{safe}" if safe else "")


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes:
        config: the sweep configuration.
        out_dir: the sweep directory (``sweep.json``, the study report, local runs).
        runs: one :class:`~cockpit_log.study.runs.StudyRun` per trial, in order.
        backend: the tracker backend the trials went to.
        seconds: wall-clock time of each trial.
    """

    config: SweepConfig
    out_dir: Path
    runs: list[StudyRun]
    backend: SweepBackend
    seconds: list[float] = field(default_factory=list)

    @property
    def index_file(self) -> Path:
        """The sweep index ``<out>/sweep.json``."""
        return self.out_dir / INDEX_FILE


def _config(config: SweepConfig | Mapping[str, Any] | str | os.PathLike[str]) -> SweepConfig:
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, Mapping):
        return parse_sweep_config(config)
    return load_sweep_config(config)


def _write_index(result: SweepResult, sink: str) -> None:
    cfg = result.config
    data = {
        "name": cfg.name,
        "method": cfg.method,
        "metric": {"name": cfg.metric.name, "goal": cfg.metric.goal},
        "sink": sink,
        "tracker": result.backend.index_info(),
        "config": cfg.raw,
        "trials": [
            {
                "name": r.name,
                "source": r.source,
                "params": r.params,
                "status": r.status,
                "error": r.error,
                "summary": r.summary,
                "metrics": r.metrics,
                "seconds": s,
            }
            for r, s in zip(result.runs, result.seconds)
        ],
    }
    tmp = result.index_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, default=str), encoding="utf-8")
    tmp.replace(result.index_file)


def _line(run: StudyRun, metric: str | None, seconds: float) -> str:
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in flatten(run.params).items())
    if run.status != "finished":
        return f"{run.name} ({params}): FAILED: {run.error}"
    parts = [
        f"median alpha {run.alpha_median:.3f} (last 10 % {run.alpha_median_last10:.3f})",
        f"final train loss {run.train_loss_final:.4g}",
    ]
    if metric and metric != FINAL_LOSS:
        parts.append(f"{metric} {run.value(metric):.4g}")
    return f"{run.name} ({params}): {', '.join(parts)}  [{seconds:.1f} s]"


def run_sweep(
    config: SweepConfig | Mapping[str, Any] | str | os.PathLike[str],
    train: TrainFunction | str,
    *,
    sink: str = "local",
    out_dir: str | os.PathLike[str] | None = None,
    count: int | None = None,
    seed: int = 0,
    project: str | None = None,
    entity: str | None = None,
    wandb_mode: str = "offline",
    tracking_uri: str | None = None,
    experiment: str | None = None,
    stream: TextIO | None = None,
) -> SweepResult:
    """Run every trial of a sweep, one after another, each into the tracker ``sink``.

    Args:
        config: a :class:`SweepConfig`, a mapping (as ``wandb.sweep`` takes it) or a YAML/JSON file.
        train: the training function (takes a :class:`Trial`; returns a number, a mapping of
            numbers or None), or its ``module:function`` name.
        sink: ``"local"``, ``"wandb"`` (runs in ``wandb_mode``, offline by default) or ``"mlflow"``
            (child runs under one parent run; ``tracking_uri``, ``experiment``).
        out_dir: the sweep directory; default ``./cockpit-sweeps/<name>-<time>``.
        count: the number of trials (random search; a cap for grid search).
        seed: seed of the random search's draws.
        project, entity: the W&B project and entity.
        stream: where a line per trial is printed (default: nowhere).

    Raises:
        ValueError: a bad configuration or sink.
        RuntimeError: every trial failed (the first error is named).
    """
    cfg = _config(config)
    func = import_function(train) if isinstance(train, str) else train
    trials = cfg.trials(count, seed)
    out = Path(out_dir) if out_dir is not None else Path("cockpit-sweeps") / f"{cfg.name}-{stamp()}"
    out.mkdir(parents=True, exist_ok=True)
    metric = {"name": cfg.metric.name, "goal": cfg.metric.goal}
    backend = make_backend(
        sink,
        out,
        cfg.name,
        metric,
        project=project or cfg.raw.get("project"),
        entity=entity or cfg.raw.get("entity"),
        wandb_mode=wandb_mode,
        tracking_uri=tracking_uri,
        experiment=experiment,
        params=cfg.raw,
    )
    result = SweepResult(cfg, out, [], backend)
    keys = varying_keys(trials)
    try:
        for index, params in enumerate(trials):
            name = trial_name(index, params, keys)
            t0 = time.perf_counter()
            run = _run_trial(func, backend, name, index, params, cfg.metric.name)
            result.runs.append(run)
            result.seconds.append(time.perf_counter() - t0)
            _write_index(result, sink)
            if stream is not None:
                print(f"[{index + 1}/{len(trials)}] {_line(run, cfg.metric.name, result.seconds[-1])}", file=stream)
    finally:
        backend.close()
    if result.runs and all(r.status != "finished" for r in result.runs):
        raise RuntimeError(f"every trial failed; the first: {result.runs[0].error}")
    return result


def _run_trial(
    func: TrainFunction, backend: SweepBackend, name: str, index: int, params: dict[str, Any], metric: str | None
) -> StudyRun:
    tracker = backend.start_trial(name, index, params)
    return execute_trial(func, Trial(params, tracker=tracker, name=name, index=index, metric_name=metric))


def execute_trial(func: TrainFunction, trial: Trial) -> StudyRun:
    """Call ``func(trial)``, log what it returns, close its cockpits, finish the trial's run.

    An exception of ``func`` makes the trial ``"failed"`` (its error in the result) instead of
    propagating; ``COCKPIT_LOG_DEBUG=1`` prints its traceback.
    """
    status, error = "finished", None
    try:
        values = metrics_from_result(func(trial), trial.metric_name)
        if values:
            trial.log(values)
    except Exception as err:  # noqa: BLE001 - one failing trial does not stop the sweep
        status = "failed"
        error = f"{type(err).__name__}: {err}"
        if os.environ.get("COCKPIT_LOG_DEBUG"):
            traceback.print_exc()
    finally:
        trial.close_cockpits()
    summary = trial.summary()
    metrics = trial.all_metrics()
    trial.tracker.finish(trial, status, error)
    if not trial.cockpits and status == "finished":
        error = "the training function did not call trial.attach(...): no cockpit readings"
    return StudyRun(trial.name, trial.source, dict(trial.config), summary, metrics, status, error)
