"""Load a run's records back: ``cockpit_log.read(source)``.

``source`` is a local run directory (or its ``records.jsonl``), an MLflow run (``"mlflow:<run_id>"``
or ``"runs:/<run_id>"``, read through the tracking URI MLflow is configured with) or an offline
W&B run directory (``wandb/offline-run-...``, or ``"wandb:<path>"``). The tracker readers live
with their sinks and are imported only when asked for.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .backends.local import RECORDS_FILE
from .errors import CockpitWarning
from .records import Record, record_from_dict

__all__ = ["read", "read_local"]


def read(source: str | os.PathLike[str]) -> list[Record]:
    """All cockpit records of a run: local directory, MLflow run or offline W&B run directory.

    Raises:
        FileNotFoundError: ``source`` is no run cockpit-log can read.
    """
    text = os.fspath(source)
    if text.startswith(("mlflow:", "runs:/")):
        from .backends.mlflow_sink import read_mlflow

        return read_mlflow(text.removeprefix("mlflow:"))
    path = Path(text.removeprefix("wandb:"))
    if text.startswith("wandb:") or _is_wandb_run_dir(path):
        from .backends.wandb_sink import read_wandb

        return read_wandb(path)
    return read_local(path)


def _is_wandb_run_dir(path: Path) -> bool:
    return path.is_dir() and any(path.glob("run-*.wandb"))


def read_local(run_dir: str | os.PathLike[str]) -> list[Record]:
    """All records of a local run directory (or of its ``records.jsonl`` file), in write order.

    A line that cannot be parsed (e.g. the last line of a run killed while writing it) is skipped
    with one warning naming the file and line; every complete line before it is returned.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``records.jsonl``.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no cockpit records at {path} (expected a run directory with {RECORDS_FILE})")
    records: list[Record] = []
    bad: list[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(record_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                bad.append(lineno)
    if bad:
        warnings.warn(
            f"cockpit-log: skipped {len(bad)} unreadable line(s) of {path} (line {', '.join(map(str, bad[:5]))}"
            f"{', ...' if len(bad) > 5 else ''}); a run killed mid-write leaves a truncated last line.",
            CockpitWarning,
            stacklevel=2,
        )
    return records
