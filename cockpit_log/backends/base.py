"""The sink interface, and the guard that keeps a failing sink from stopping training."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import WarnOnce
from ..records import Record

__all__ = ["GuardedSink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """Receives the records of each step. ``write`` may be called from the training thread."""

    def write(self, records: Sequence[Record]) -> None:
        """Take the records of one step (or of one batch of steps)."""

    def close(self) -> None:
        """Deliver what is pending and release resources."""


class GuardedSink:
    """Wraps a sink so that its exceptions become one warning each, never an error in training.

    After ``max_failures`` consecutive failures the sink is switched off (with a warning); records
    it could not take are kept in ``undelivered`` so nothing is silently lost.
    """

    def __init__(self, sink: Sink, warn: WarnOnce, max_failures: int = 3) -> None:
        self.sink = sink
        self._warn = warn
        self._max_failures = max_failures
        self._failures = 0
        self.undelivered: list[Record] = []
        self.name = type(sink).__name__

    @property
    def disabled(self) -> bool:
        return self._failures >= self._max_failures

    def write(self, records: Sequence[Record]) -> None:
        if self.disabled:
            self.undelivered.extend(records)
            return
        try:
            self.sink.write(records)
            self._failures = 0
        except Exception as err:  # noqa: BLE001 - a sink must never stop training
            self._failures += 1
            self.undelivered.extend(records)
            self._warn(
                f"sink-fail-{id(self)}-{self._failures >= self._max_failures}",
                f"cockpit-log: sink {self.name} failed ({type(err).__name__}: {err}); "
                + ("it is switched off, its records are kept in memory." if self.disabled else "training goes on.")
                + "\n"
                + "".join(traceback.format_exception_only(type(err), err)).strip(),
            )

    def close(self) -> None:
        try:
            self.sink.close()
        except Exception as err:  # noqa: BLE001
            self._warn(f"sink-close-{id(self)}", f"cockpit-log: closing sink {self.name} failed: {err}")
