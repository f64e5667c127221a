"""``cockpit-log study SOURCE...``: load the runs, read them, write the report, log it to the tracker."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .analysis import StudyReading, read_study
from .config import Metric
from .report import write_study
from .runs import StudyRun
from .sources import LoadedSource, load_sources
from .trackers import SweepBackend

__all__ = ["StudyOutcome", "run_study", "study_runs"]

DEFAULT_OUT = "cockpit-study"


@dataclass
class StudyOutcome:
    """What a study did: its reading, the files written, and where the report was logged."""

    reading: StudyReading
    files: list[Path]
    logged_to: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)


def _metric(loaded: list[LoadedSource], name: str | None, goal: str | None) -> Metric:
    found = next((s.metric for s in loaded if s.metric is not None and s.metric.name), None)
    if name is not None:
        same = found is not None and found.name == name
        return Metric(name, goal or (found.goal if same else "minimize"))
    if found is not None:
        return Metric(found.name, goal or found.goal)
    return Metric(None, goal or "minimize")


def study_runs(
    runs: Sequence[StudyRun],
    out_dir: str | os.PathLike[str],
    *,
    metric: Metric | None = None,
    lr_key: str | None = None,
    targets: Sequence[SweepBackend] = (),
    title: str = "Learning-rate study",
) -> StudyOutcome:
    """Read ``runs``, write ``study.png``/``study.md``/``study.json`` into ``out_dir`` and log them to
    each of ``targets`` (a failure to log is reported in the outcome, the files stay)."""
    reading = read_study(runs, metric, lr_key)
    files = write_study(reading, out_dir, title=title)
    outcome = StudyOutcome(reading, files)
    for target in targets:
        try:
            where = target.log_study(files, reading)
        except Exception as err:  # noqa: BLE001 - the report is on disk; the tracker is a bonus
            outcome.log_errors.append(f"{target.name}: {type(err).__name__}: {err}")
            continue
        if where:
            outcome.logged_to.append(where)
    return outcome


def run_study(
    sources: Sequence[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metric: str | None = None,
    goal: str | None = None,
    lr_key: str | None = None,
    tracking_uri: str | None = None,
    log: bool = True,
) -> StudyOutcome:
    """The study of the runs at ``sources`` (see :mod:`cockpit_log.study.sources`).

    The metric is ``metric`` (with ``goal``), else the one the sweep named, else the final
    training loss. The report goes to ``out_dir`` (default: the sweep directory for a single sweep
    source, else ``./cockpit-study``) and, with ``log``, to the tracker the runs came from.

    Raises:
        FileNotFoundError: a source holds no runs.
        ValueError: the sources hold no runs at all.
    """
    loaded = load_sources(sources, tracking_uri)
    runs = [r for s in loaded for r in s.runs]
    if not runs:
        raise ValueError(f"no runs found in {', '.join(sources)}")
    if out_dir is None:
        single = loaded[0].out_dir if len(loaded) == 1 else None
        out_dir = single if single is not None else DEFAULT_OUT
    name = next((s.name for s in loaded if s.name), None)
    title = f"Learning-rate study: {name}" if name else "Learning-rate study"
    targets: dict[str, SweepBackend] = {}
    for s in loaded if log else []:
        if s.target is not None:
            targets.setdefault(s.target.description, s.target)  # one report per tracker location
    return study_runs(
        runs, out_dir, metric=_metric(loaded, metric, goal), lr_key=lr_key, targets=list(targets.values()), title=title
    )
