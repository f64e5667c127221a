"""What a sink keeps to draw the cockpit view while training: bounded by the run's scalar readings.

The view plots every scalar reading over the run but only the latest histogram of each quantity,
so a sink that draws it keeps scalar records (and their per-parameter values) and replaces each
histogram quantity's record by the newer one. Memory grows with the number of scalar readings
only, not with the histograms' ``bins x parameters x steps``.
"""

from __future__ import annotations

from collections.abc import Iterable

from matplotlib.figure import Figure

from ..records import Record
from .layout import cockpit_view

__all__ = ["ViewMemory"]


class ViewMemory:
    """Records needed by :func:`~cockpit_log.view.cockpit_view`, kept compactly (see the module docstring)."""

    def __init__(self) -> None:
        self._scalars: list[Record] = []
        self._latest_histograms: dict[str, Record] = {}

    def add(self, records: Iterable[Record]) -> None:
        """Take newly written records."""
        for r in records:
            if r.is_histogram:
                old = self._latest_histograms.get(r.quantity)
                if old is None or r.step >= old.step:
                    self._latest_histograms[r.quantity] = r
            else:
                self._scalars.append(r)

    def records(self) -> list[Record]:
        """Scalar records in arrival order, then the latest histogram of each quantity."""
        return [*self._scalars, *self._latest_histograms.values()]

    def figure(self, title: str | None = None) -> Figure | None:
        """The cockpit view of what was kept, or None before the first record."""
        records = self.records()
        return cockpit_view(records, title=title) if records else None
