"""The ``"memory"`` sink: keeps every record in a list (``ck.records``)."""

from __future__ import annotations

from collections.abc import Sequence

from ..records import Record

__all__ = ["MemorySink"]


class MemorySink:
    """Appends records to ``self.records``; nothing is written anywhere."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass
