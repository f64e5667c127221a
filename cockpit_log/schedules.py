"""Track schedules: which optimizer steps a quantity is computed at.

A schedule is any callable ``step -> bool``. :func:`every` and :func:`log_spaced` build the two
the paper uses (Section 4 suggests log-spaced tracking for long runs); :func:`at_steps` takes an
explicit list. :func:`as_schedule` turns an ``int`` (every k steps), a list of steps, or a
callable into a schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Union

import numpy as np

__all__ = ["Schedule", "ScheduleLike", "as_schedule", "at_steps", "every", "log_spaced"]

Schedule = Callable[[int], bool]
ScheduleLike = Union[int, Iterable[int], Schedule, None]


class every:
    """Track every ``k`` steps from ``start`` on (steps ``start, start + k, ...``), up to ``stop``."""

    def __init__(self, k: int, start: int = 0, stop: int | None = None) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"every(k): k must be a positive integer, got {k!r}")
        if start < 0:
            raise ValueError(f"every(start=...) must be >= 0, got {start!r}")
        self.k, self.start, self.stop = int(k), int(start), stop

    def __call__(self, step: int) -> bool:
        if step < self.start or (self.stop is not None and step > self.stop):
            return False
        return (step - self.start) % self.k == 0

    def __repr__(self) -> str:
        return f"every({self.k}, start={self.start}, stop={self.stop})"


class at_steps:
    """Track exactly at the given steps."""

    def __init__(self, steps: Iterable[int]) -> None:
        steps = [int(s) for s in steps]
        if any(s < 0 for s in steps):
            raise ValueError("at_steps: steps must be >= 0")
        self.steps = frozenset(steps)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self) -> str:
        return f"at_steps({sorted(self.steps)})"


class log_spaced(at_steps):
    """Track at about ``num`` steps spaced logarithmically between 0 and ``last`` (inclusive).

    The steps are ``{0, last} ∪ unique(round(logspace(0, log10(last), num)))``: dense early in
    training, where the instruments move fastest, and sparse later; ``last`` is always included
    (rounding, not flooring, keeps the largest logspace value from falling just below it).
    """

    def __init__(self, last: int, num: int = 100) -> None:
        if last < 1 or num < 1:
            raise ValueError("log_spaced(last, num): both must be >= 1")
        steps = np.unique(np.rint(np.logspace(0, np.log10(last), num)).astype(int))
        super().__init__([0, *steps.tolist(), last])
        self.last, self.num = last, num

    def __repr__(self) -> str:
        return f"log_spaced(last={self.last}, num={self.num})"


def as_schedule(spec: ScheduleLike, default: Schedule | None = None) -> Schedule:
    """A schedule from an int (every k steps), a list of steps, a callable, or None (``default``)."""
    if spec is None:
        return default if default is not None else every(1)
    if isinstance(spec, bool):
        raise TypeError("a schedule cannot be a bool")
    if isinstance(spec, int):
        return every(spec)
    if callable(spec):
        return spec
    try:
        return at_steps(spec)
    except TypeError as err:
        raise TypeError(f"schedule must be an int, a list of steps or a callable step -> bool, got {spec!r}") from err
