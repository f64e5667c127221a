"""What a training function gets in a sweep: :class:`Trial` (its parameters, ``attach``, ``log``).

A training function for ``cockpit-log sweep`` (and for ``wandb.agent`` through
:func:`cockpit_log.study.agent_function`) takes one :class:`Trial`::

    def train(trial):
        model, loss_fn = ..., nn.CrossEntropyLoss()
        opt = torch.optim.SGD(model.parameters(), lr=trial.config["lr"])
        ck = trial.attach(model, loss_fn, opt)  # the trial's tracker, plus what its summary needs
        ...  # the usual loop
        ck.close()
        return {"val_accuracy": evaluate(model)}  # or trial.log(val_accuracy=...), or nothing

``trial.attach`` is :func:`cockpit_log.attach` with the sink of the trial's tracker (a local run
directory, the trial's W&B run, or its MLflow child run) plus a small sink that keeps the scalar
readings for the run's summary.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from torch import nn

from ..cockpit import Cockpit, attach
from ..records import Record
from .runs import trial_summary

__all__ = ["ScalarKeeper", "Trial", "TrialTracker", "metrics_from_result"]


class TrialTracker(Protocol):
    """Where a trial's records and metrics go (see :mod:`cockpit_log.study.trackers`)."""

    source: str

    def sink_spec(self) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """The sinks to attach with and their options."""

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log the user's metrics into the trial's run."""

    def logged_metrics(self) -> dict[str, float]:
        """Numeric metrics the training function logged into the run by the tracker's own API."""

    def finish(self, trial: Trial, status: str, error: str | None) -> None:
        """Write the trial's summary and metrics into its run and end it."""


class ScalarKeeper:
    """A sink that keeps the scalar readings (without per-parameter detail), for the run summary."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        """Keep the network-wide value of each scalar record."""
        for r in records:
            if r.is_scalar:
                self.records.append(Record(r.step, r.quantity, float(r.value), {}, r.reason, {}))

    def close(self) -> None:
        """Nothing to release."""


def metrics_from_result(result: Any, metric_name: str | None) -> dict[str, float]:
    """The metrics in a training function's return value: a mapping of numbers, or one number
    (named ``metric_name``, or ``"metric"``), or None.

    Raises:
        TypeError: anything else.
    """
    if result is None:
        return {}
    if isinstance(result, numbers.Real) and not isinstance(result, bool):
        return {metric_name or "metric": float(result)}
    if hasattr(result, "item") and callable(result.item):  # a 0-d tensor or numpy scalar
        return {metric_name or "metric": float(result.item())}
    if isinstance(result, Mapping):
        out: dict[str, float] = {}
        for k, v in result.items():
            if hasattr(v, "item") and callable(v.item):
                v = v.item()
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                out[str(k)] = float(v)
        return out
    raise TypeError(f"a training function returns a number, a mapping of numbers or None; got {type(result).__name__}")


class Trial:
    """One trial of a sweep, handed to the training function.

    Attributes:
        config: the trial's parameters (nested dictionaries for nested sweep parameters).
        name: the trial's name (``trial-003``); also its run's name in the tracker.
        index: its position in the sweep, from 0.
        metric_name: the sweep's metric, if any (a plain number returned gets this name).
        metrics: the metrics logged with :meth:`log` or returned.
        cockpits: the cockpits made by :meth:`attach` (closed by the runner if still open).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        tracker: TrialTracker | None = None,
        name: str = "trial",
        index: int = 0,
        metric_name: str | None = None,
    ) -> None:
        if tracker is None:
            from .trackers import LocalTracker

            tracker = LocalTracker.new(name)
        self.config: dict[str, Any] = dict(config or {})
        self.name = name
        self.index = index
        self.metric_name = metric_name
        self.tracker = tracker
        self.metrics: dict[str, float] = {}
        self.cockpits: list[Cockpit] = []
        self._keeper = ScalarKeeper()

    @property
    def source(self) -> str:
        """What :func:`cockpit_log.read` takes to load this trial's records."""
        return self.tracker.source

    def attach(
        self, model: nn.Module, loss_fn: Any = None, optimizer: Any = None, *, sink: Any = None, **options: Any
    ) -> Cockpit:
        """:func:`cockpit_log.attach` with the trial's sink (and ``sink``, extra sinks of your own).

        Any option of ``attach`` (``quantities``, ``schedule``, ``automatic``, ...) may be given;
        Alpha and Loss must be among the quantities for the study's summary. ``sink_options`` are
        merged into the trial sink's own (e.g. ``{"wandb": {"view": False}}``).
        """
        sinks, sink_options = self.tracker.sink_spec()
        extra = [] if sink is None else ([sink] if isinstance(sink, str) or not isinstance(sink, Sequence) else sink)
        given = options.pop("sink_options", None) or {}
        merged = {k: {**sink_options.get(k, {}), **given.get(k, {})} for k in {*sink_options, *given}}
        ck = attach(model, loss_fn, optimizer, sink=[*sinks, *extra, self._keeper], sink_options=merged, **options)
        self.cockpits.append(ck)
        return ck

    def log(self, metrics: Mapping[str, float] | None = None, **more: float) -> None:
        """Log metrics of the trial (e.g. the validation accuracy) into its run and its summary."""
        values = metrics_from_result({**(metrics or {}), **more}, self.metric_name)
        self.metrics.update(values)
        if values:
            self.tracker.log_metrics(values)

    @property
    def records(self) -> list[Record]:
        """The scalar readings of the trial so far (network-wide values only)."""
        return list(self._keeper.records)

    def summary(self) -> dict[str, float]:
        """The per-run summary of the readings so far (:func:`cockpit_log.study.runs.trial_summary`)."""
        return trial_summary(self._keeper.records)

    def all_metrics(self) -> dict[str, float]:
        """The metrics logged into the tracker directly, updated by those given to :meth:`log` or returned."""
        out = {k: v for k, v in self.tracker.logged_metrics().items() if isinstance(v, float)}
        out.update(self.metrics)
        return out

    def close_cockpits(self) -> None:
        """Close every cockpit :meth:`attach` made (closing twice is harmless)."""
        for ck in self.cockpits:
            ck.close()

    def __repr__(self) -> str:
        return f"Trial({self.name!r}, config={self.config!r}, source={self.source!r})"
