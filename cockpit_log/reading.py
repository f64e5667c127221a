"""Load a run's records back: ``cockpit_log.read(run_dir)``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .backends.local import RECORDS_FILE
from .errors import CockpitWarning
from .records import Record, record_from_dict

__all__ = ["read"]


def read(run_dir: str | os.PathLike[str]) -> list[Record]:
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
