"""One run of a study: its parameters, its cockpit summary and its metrics (:class:`StudyRun`).

The per-run summary is :func:`cockpit_log.summary.run_summary` (alpha medians over the whole run
and its last 10 %, last values) plus ``train_loss_final``, the mean mini-batch loss over the last
10 % of the run's steps (one mini-batch is too noisy to compare runs by).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import Record
from ..summary import last_fraction, run_summary

__all__ = ["FINAL_LOSS", "LR_KEYS", "StudyRun", "final_train_loss", "learning_rate_key", "trial_summary"]

#: the summary key of the final training loss
FINAL_LOSS = "train_loss_final"
#: parameter names taken for the learning rate, in this order, when none is named
LR_KEYS = ("lr", "learning_rate", "learning-rate", "optimizer.lr", "optimizer.learning_rate")


def final_train_loss(records: Iterable[Record], fraction: float = 0.1) -> float:
    """Mean of the finite Loss readings in the last ``fraction`` of the run's steps (NaN if none)."""
    records = list(records)
    if not records:
        return math.nan
    last_step = max(r.step for r in records)
    losses = sorted((r.step, float(r.value)) for r in records if r.quantity == "Loss" and r.is_scalar)
    late = [v for v in last_fraction(losses, fraction, last_step) if math.isfinite(v)]
    if not late and losses and not math.isfinite(losses[-1][1]):
        return losses[-1][1]  # a diverged run: its last loss is inf/NaN, and so is its final loss
    return float(np.mean(late)) if late else math.nan


def trial_summary(records: Iterable[Record]) -> dict[str, float]:
    """The per-run summary: :func:`~cockpit_log.summary.run_summary` plus :data:`FINAL_LOSS`."""
    records = list(records)
    out = run_summary(records)
    out[FINAL_LOSS] = final_train_loss(records)
    return out


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter dictionaries as one level with dotted names (``{"optimizer.lr": 0.1}``)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def learning_rate_key(params: Iterable[Mapping[str, Any]], key: str | None = None) -> str | None:
    """The (flattened) parameter name holding the learning rate: ``key`` if given, else the first of
    :data:`LR_KEYS` that some run has with a positive number."""
    flat = [flatten(p) for p in params]
    for k in (key,) if key else LR_KEYS:
        if any(_positive(p.get(k)) for p in flat):
            return k
    return None


def _positive(v: Any) -> bool:
    try:
        return float(v) > 0
    except (TypeError, ValueError):
        return False


@dataclass
class StudyRun:
    """One run of a study.

    Attributes:
        name: a short name (the trial's or the run's).
        source: what :func:`cockpit_log.read` takes to load its records.
        params: its hyperparameters (nested dictionaries allowed).
        summary: :func:`trial_summary` of its records.
        metrics: the user's metrics (returned or logged by the training function).
        status: ``"finished"`` or ``"failed"``.
        error: the error of a failed run.
    """

    name: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "finished"
    error: str | None = None

    @property
    def alpha_median(self) -> float:
        """Median alpha over the whole run (NaN without finite Alpha readings)."""
        return float(self.summary.get("alpha_median", math.nan))

    @property
    def alpha_median_last10(self) -> float:
        """Median alpha over the last 10 % of the run."""
        return float(self.summary.get("alpha_median_last10", math.nan))

    @property
    def train_loss_final(self) -> float:
        """Mean mini-batch loss over the last 10 % of the run."""
        return float(self.summary.get(FINAL_LOSS, math.nan))

    def value(self, name: str) -> float:
        """A metric by name: the user's metrics first, then the summary (e.g. ``train_loss_final``,
        ``alpha_median``, or with the trackers' ``cockpit_`` prefix); NaN when the run has none."""
        for source in (self.metrics, self.summary):
            if name in source:
                return _float(source[name])
        bare = name.removeprefix("cockpit_")
        return _float(self.summary[bare]) if bare in self.summary else math.nan

    def param(self, key: str | None) -> float:
        """A numeric (flattened) parameter, NaN when missing or not a number."""
        if key is None:
            return math.nan
        return _float(flatten(self.params).get(key))


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
