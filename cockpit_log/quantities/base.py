"""The quantity interface: what an instrument needs at a step, and how it turns that into records."""

from __future__ import annotations

import math
from typing import ClassVar

from ..records import Record
from ..schedules import Schedule, ScheduleLike, as_schedule
from ..statistics import Needs, StepStatistics
from . import equations as eq

__all__ = ["PerSampleScalar", "Quantity", "nan_record"]


def nan_record(step: int, name: str, reason: str) -> Record:
    """A NaN reading with the reason it is undefined."""
    return Record(step=step, quantity=name, value=math.nan, reason=reason)


class Quantity:
    """One instrument of the paper.

    Subclasses set ``name`` (the paper's name), implement :meth:`needs_at` (statistics needed at a
    step it is due) and :meth:`compute` (records from a finished step). ``schedule`` says at which
    steps it is due; ``None`` takes the cockpit's default schedule.
    """

    name: ClassVar[str] = ""
    #: the quantity spans two steps (computed from step t and t+1, stamped with t)
    two_step: ClassVar[bool] = False

    def __init__(self, schedule: ScheduleLike = None) -> None:
        self.schedule: Schedule = as_schedule(schedule) if schedule is not None else None  # type: ignore[assignment]

    def bind_default_schedule(self, default: Schedule) -> None:
        """Use ``default`` if the quantity was created without its own schedule."""
        if self.schedule is None:
            self.schedule = default

    def is_due(self, step: int) -> bool:
        return step >= 0 and bool(self.schedule(step))

    def needs(self, step: int) -> Needs:
        """Statistics needed at ``step`` (for this step, or as the end point of the previous one)."""
        need = self.needs_at(step) if self.is_due(step) else Needs()
        if self.two_step and self.is_due(step - 1):
            need = need | self.needs_as_end(step)
        return need

    def needs_at(self, step: int) -> Needs:
        raise NotImplementedError

    def needs_as_end(self, step: int) -> Needs:
        """Statistics needed at ``step`` when it is the end point of a two-step reading."""
        return Needs()

    def compute(self, stats: StepStatistics) -> list[Record]:
        """Records produced once step ``stats.step`` is finished (optimizer update included)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r})"


class PerSampleScalar(Quantity):
    """A network-wide scalar computed from this step's per-sample statistics by :meth:`_result`.

    NaN with the reason when the step's per-sample statistics are unusable (see
    :meth:`~cockpit_log.statistics.StepStatistics.per_sample_problem`).
    """

    def _result(self, stats: StepStatistics) -> eq.Result:
        raise NotImplementedError

    def compute(self, stats: StepStatistics) -> list[Record]:
        problem = stats.per_sample_problem()
        if problem:
            return [nan_record(stats.step, self.name, problem)]
        value, reason = self._result(stats)
        return [Record(stats.step, self.name, value, reason=reason)]
