"""The embedded local sink (the default): one run directory, records as JSON Lines.

Layout of a run directory::

    <run_dir>/
      meta.json        # attach() settings: quantities, schedules, model size, versions
      records.jsonl    # one record per line (see cockpit_log.records.record_to_dict)

Each step's records are appended and flushed to the operating system before training continues,
so a run killed mid-training (even with SIGKILL) leaves every record of the finished steps
readable. A power loss can still lose what the OS had not written to disk yet; pass
``fsync=True`` to force each step to disk (slower). :func:`cockpit_log.read` loads a run back.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import Record, record_to_json

__all__ = ["LocalSink", "default_run_dir"]

RECORDS_FILE = "records.jsonl"
META_FILE = "meta.json"


def default_run_dir(root: str | os.PathLike[str] = "cockpit-runs") -> Path:
    """A new directory name ``<root>/run-YYYYmmdd-HHMMSS-<random>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"run-{stamp}-{secrets.token_hex(3)}"


class LocalSink:
    """Appends records to ``<run_dir>/records.jsonl``.

    Args:
        run_dir: the run directory; created if missing. Default: a new directory under
            ``./cockpit-runs`` (or under ``$COCKPIT_LOG_DIR`` when set).
        fsync: also force every step's records to disk.
    """

    def __init__(self, run_dir: str | os.PathLike[str] | None = None, fsync: bool = False) -> None:
        if run_dir is None:
            run_dir = default_run_dir(os.environ.get("COCKPIT_LOG_DIR", "cockpit-runs"))
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._file = open(self.run_dir / RECORDS_FILE, "a", encoding="utf-8")  # noqa: SIM115

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Write the run's settings to ``meta.json``."""
        with open(self.run_dir / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, default=str)

    def write(self, records: Sequence[Record]) -> None:
        if self._file.closed:
            raise RuntimeError(f"local sink for {self.run_dir} is closed")
        self._file.write("".join(record_to_json(r) + "\n" for r in records))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __repr__(self) -> str:
        return f"LocalSink({str(self.run_dir)!r})"
