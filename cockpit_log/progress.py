"""A one-line progress bar with the loss and a few live instrument readings (no extra dependency).

On a terminal the line is redrawn in place (carriage return, at most ten times a second); when the
output is a file or a pipe, a line is printed at every tenth of the run instead.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import TextIO

__all__ = ["LIVE_READINGS", "ProgressLine"]

#: quantity -> short label shown live, in this order, when the run tracks it
LIVE_READINGS: dict[str, str] = {
    "Alpha": "alpha",
    "GradNorm": "|g|",
    "NormTest": "norm test",
    "Distance": "dist",
    "HessMaxEV": "λmax",
}


class ProgressLine:
    """Draws ``[#####.....] step 40/100  loss 0.512  alpha +0.21  |g| 1.3 ...`` on ``stream``."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24, min_interval: float = 0.1) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.width = width
        self.min_interval = min_interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = -math.inf
        self._next_report = 0
        self._t0 = time.perf_counter()
        self._drawn = False

    def line(self, step: int, loss: float, readings: Mapping[str, float]) -> str:
        """The text of the bar after ``step + 1`` of ``total`` steps."""
        done = step + 1
        filled = round(self.width * done / self.total)
        parts = [f"[{'#' * filled}{'.' * (self.width - filled)}] step {done}/{self.total}", f"loss {loss:.3f}"]
        for quantity, label in LIVE_READINGS.items():
            if quantity in readings:
                v = readings[quantity]
                parts.append(f"{label} {v:+.2f}" if quantity == "Alpha" else f"{label} {v:.3g}")
        parts.append(f"{time.perf_counter() - self._t0:.0f}s")
        return "  ".join(parts)

    def update(self, step: int, loss: float, readings: Mapping[str, float]) -> None:
        """Show the state after optimizer step ``step`` (from 0)."""
        last = step + 1 >= self.total
        if self.tty:
            now = time.perf_counter()
            if not last and now - self._last_draw < self.min_interval:
                return
            self._last_draw = now
            self.stream.write("\r" + self.line(step, loss, readings) + "\x1b[K")
            self._drawn = True
        elif step + 1 >= self._next_report or last:
            self.stream.write(self.line(step, loss, readings) + "\n")
            self._next_report = step + 1 + max(1, self.total // 10)
        self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
