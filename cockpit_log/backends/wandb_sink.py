"""The Weights & Biases sink: ``attach(..., sink="wandb")`` or ``sink=WandbSink(...)``.

It logs into ``wandb.run`` (or the ``run`` given) if there is one, otherwise starts a run with
``wandb.init(**options)`` and finishes only a run it started. Each tracked step becomes one W&B
history row (key scheme: :mod:`cockpit_log.backends._wandb_convert`; a row is logged once the next
step's records arrive, since two-step quantities such as Alpha come one step late) against the step metric
``cockpit/step`` declared with ``define_metric``; the sink never passes W&B's own ``step=``, so
the user's ``wandb.log`` calls and ours never collide or go back in step. At close it logs the
custom charts (:mod:`cockpit_log.backends._wandb_charts`) and writes the run summary
(:func:`cockpit_log.summary.run_summary`, keys ``cockpit_<name>``, e.g. ``cockpit_alpha_median``).

The training thread only enqueues; a background thread converts and logs
(:mod:`cockpit_log.backends._wandb_queue`). If W&B fails (e.g. the run was finished underneath
the sink), there is one warning, training goes on, and every record from then on is kept in a
spool file (local JSON-lines format) that :func:`replay_wandb` or ``cockpit-log-wandb replay``
writes into the run later. :func:`read_wandb` reads the records back from an offline run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import wandb

from ..errors import WarnOnce
from ..naming import PREFIX, quantity_key
from ..records import Record
from ..view.memory import ViewMemory
from ._wandb_charts import CHART_PREFIX, Tally, chart_row
from ._wandb_convert import INFO_PREFIX, META_PREFIX, STEP_KEY, TABLE_PREFIX, group_by_step, image_from, step_row
from ._wandb_queue import BackgroundSender, Spool, replay_spool
from ._wandb_read import QUANTITIES_CONFIG_KEY, load_run_log, read_wandb

__all__ = ["IMAGE_PREFIX", "SPOOL_FILE", "WandbSink", "read_wandb", "replay_wandb"]

IMAGE_PREFIX = f"{PREFIX}_images"
SPOOL_FILE = "cockpit-spool.jsonl"
#: The cockpit view hook: gets every record so far, returns a matplotlib Figure or PNG bytes.
ViewHook = Callable[[Sequence[Record]], Any]


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(data), default=str))


class WandbSink:
    """Streams cockpit records into a W&B run (see the module docstring).

    Args:
        run: the run to log into; default ``wandb.run``, or a new run started with the options below.
        project, entity, name, mode, dir: passed to ``wandb.init`` when the sink starts the run.
        init_options: further ``wandb.init`` keyword arguments (e.g. ``settings``, ``tags``).
        per_param_histograms: also log each parameter's Histogram1d (``cockpit/<q>/<param>``).
        hist2d_images: log each Histogram2d's network-wide value as an image (heatmap with marginals).
        hist2d_tables: log each Histogram2d (network-wide and per parameter) as a table.
        charts_every: log the custom charts every this many tracked steps (0: only at close).
        chart_entity: entity holding the chart presets (``cockpit-log-wandb charts``); default:
            the run's entity. Without one, the chart tables and built-in charts are still logged.
        view: the cockpit view image: ``True`` (default) draws :func:`cockpit_log.view.cockpit_view`;
            a callable taking the records kept so far and returning a matplotlib ``Figure`` or PNG
            bytes draws something else; ``None``/``False`` draws nothing. Logged as
            ``cockpit_images/view`` every ``view_every`` tracked steps (0: only at close). The sink
            keeps every scalar record and the latest histogram of each quantity for it
            (:class:`cockpit_log.view.memory.ViewMemory`).
        view_every: see ``view``.
        spool: the spool file for undelivered records; default ``cockpit-spool.jsonl`` in the
            W&B run's directory (next to its ``run-<id>.wandb``).
        queue_size: bound of the background queue, in steps; when full, steps go to the spool.
        close_timeout: seconds ``close()`` waits for pending logging before spooling the rest.
        background: log from a background thread (default). ``False`` logs in ``write`` itself
            and lets W&B's exceptions through (used by :func:`replay_wandb`).
    """

    def __init__(
        self,
        run: Any = None,
        *,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 - wandb.init's name
        init_options: Mapping[str, Any] | None = None,
        per_param_histograms: bool = True,
        hist2d_images: bool = True,
        hist2d_tables: bool = True,
        charts_every: int = 100,
        chart_entity: str | None = None,
        view: ViewHook | bool | None = True,
        view_every: int = 0,
        spool: str | os.PathLike[str] | None = None,
        queue_size: int = 1000,
        close_timeout: float = 60.0,
        background: bool = True,
    ) -> None:
        self._warn = WarnOnce()
        self._options = {
            "per_param_histograms": per_param_histograms,
            "hist2d_images": hist2d_images,
            "hist2d_tables": hist2d_tables,
        }
        self._charts_every = int(charts_every)
        if view is True:
            from ..view.layout import cockpit_view

            view = cockpit_view
        self._view: ViewHook | None = view or None
        self._view_every = int(view_every)
        self._close_timeout = close_timeout
        self._tally = Tally()
        self._kept = ViewMemory()
        self._names: dict[str, str] = {}
        self._pending: dict[int, list[Record]] = {}
        self._tracked = 0
        self._closed = False
        self.owns_run = False
        init_error: Exception | None = None
        if run is None:
            run = wandb.run
        if run is None:
            given = {"project": project, "entity": entity, "name": name, "mode": mode, "dir": dir}
            opts = {k: v for k, v in given.items() if v is not None} | dict(init_options or {})
            try:
                run = wandb.init(**opts)
                self.owns_run = True
            except Exception as err:  # noqa: BLE001 - never stop training; records are spooled instead
                if not background:
                    raise
                init_error = err
        self.run = run
        self._chart_entity = chart_entity or getattr(run, "entity", None) or None
        if run is not None:
            try:
                self._define_metrics()
            except Exception as err:  # noqa: BLE001
                if not background:
                    raise
                init_error = err
        if spool is None:
            if run is not None and getattr(run, "dir", None):
                spool = Path(run.dir).parent / SPOOL_FILE
            else:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                spool = Path(os.environ.get("COCKPIT_LOG_DIR", "cockpit-runs")) / f"wandb-spool-{stamp}.jsonl"
        self.spool = Spool(spool)
        self._sender = BackgroundSender(self._deliver, self.spool, self._warn, queue_size) if background else None
        if init_error is not None and self._sender is not None:
            self._sender.error = init_error
            self._warn(
                "wandb-init",
                f"cockpit-log: could not start W&B ({type(init_error).__name__}: {init_error}); training goes on "
                f"and the records are kept in {self.spool.path} (replay: cockpit-log-wandb replay {self.spool.path}).",
            )

    # ------------------------------------------------------------------ sink protocol
    def write(self, records: Sequence[Record]) -> None:
        """Take one step's records (training thread): noted for the summary, then queued for W&B."""
        batch = list(records)
        self._tally.observe(batch)
        if self._view is not None:
            self._kept.add(batch)
        if self._sender is not None:
            self._sender.put(batch)
        else:
            self._deliver(batch)

    def set_run_info(self, info: Mapping[str, Any]) -> None:
        """Record the cockpit's settings (the local store's ``meta.json``) under ``cockpit`` in the run config."""
        data = _jsonable(info)
        self._do(lambda: self.run.config.update({PREFIX: data}, allow_val_change=True), "config")

    def prime(self, records: Sequence[Record]) -> None:
        """Count ``records`` (already in the run) into the summary and charts without logging them."""
        self._tally.observe(records)
        if self._view is not None:
            self._kept.add(records)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every record written so far was handed to W&B; returns whether it was in time.

        Call it before finishing the run yourself while the cockpit is still attached (or close the
        cockpit first): W&B drops rows that arrive while a run is finishing.
        """
        self._do(self._log_pending, "flush")
        return self._sender.flush(timeout) if self._sender is not None else True

    def close(self) -> None:
        """Log the final charts, view image and summary, wait for pending logging, finish an own run."""
        if self._closed:
            return
        self._closed = True
        if self._sender is not None:
            self._sender.call(self._finalize, "final charts and summary", timeout=self._close_timeout)
            self._sender.close(self._close_timeout)
        elif self.run is not None:
            self._finalize()
        if self.owns_run and self.run is not None:
            try:
                self.run.finish()
            except Exception as err:  # noqa: BLE001
                if self._sender is None:
                    raise
                self._warn("wandb-finish", f"cockpit-log: finishing the W&B run failed: {err}")
        if self.spool.count:
            self._warn(
                "wandb-spooled",
                f"cockpit-log: {self.spool.count} records did not reach W&B; they are kept in {self.spool.path}. "
                f"Replay them with `cockpit-log-wandb replay {self.spool.path}` "
                "(or cockpit_log.backends.wandb_sink.replay_wandb).",
            )

    # ------------------------------------------------------------------ worker side
    def _do(self, fn: Callable[[], None], what: str) -> None:
        if self.run is None:
            return
        if self._sender is not None:
            self._sender.call(fn, what)
        else:
            fn()

    def _define_metrics(self) -> None:
        run = self.run
        run.define_metric(STEP_KEY)
        for prefix in (PREFIX, INFO_PREFIX, META_PREFIX, TABLE_PREFIX, CHART_PREFIX, IMAGE_PREFIX):
            run.define_metric(f"{prefix}/*", step_metric=STEP_KEY)

    def _deliver(self, batch: list[Record]) -> None:
        run = self.run
        new = {quantity_key(r.quantity): r.quantity for r in batch if quantity_key(r.quantity) not in self._names}
        if new:
            self._names.update(new)
            run.config.update({QUANTITIES_CONFIG_KEY: dict(self._names)}, allow_val_change=True)
        # One row per step: a step's two-step records (Alpha, UpdateSize) come with the next batch,
        # so the row of the latest step waits for it; the older ones are complete and logged now.
        for step, records in group_by_step(batch):
            self._pending.setdefault(step, []).extend(records)
        latest = max(self._pending)
        for step in sorted(self._pending):
            if step != latest:
                self._log_step(step, self._pending.pop(step))
        self._tracked += 1
        pictures = ((self._charts_every, self._log_charts, "charts"), (self._view_every, self._log_view, "view"))
        for every, log, what in pictures:
            if every > 0 and self._tracked % every == 0:
                try:  # a picture that fails is reported, the records are delivered all the same
                    log()
                except Exception as err:  # noqa: BLE001
                    self._warn(f"wandb-{what}", f"cockpit-log: logging the {what} to W&B failed: {err}")

    def _log_step(self, step: int, records: list[Record]) -> None:
        row = step_row(records, **self._options)
        row[STEP_KEY] = step
        self.run.log(row)

    def _log_pending(self) -> None:
        while self._pending:
            step = min(self._pending)
            self._log_step(step, self._pending.pop(step))

    def _log_charts(self) -> None:
        row = chart_row(self._tally, self._chart_entity)
        if row:
            row[STEP_KEY] = max(self._tally.last_step, 0)
            self.run.log(row)

    def _log_view(self) -> None:
        if self._view is None:
            return
        records = self._kept.records()
        if not records:
            return
        picture = self._view(records)
        if picture is not None:
            self.run.log({f"{IMAGE_PREFIX}/view": image_from(picture), STEP_KEY: max(self._tally.last_step, 0)})

    def _finalize(self) -> None:
        self._log_pending()
        self._log_charts()
        self._log_view()
        summary = {f"{PREFIX}_{k}": v for k, v in self._tally.summary().items()}
        if summary:
            self.run.summary.update(summary)

    def __repr__(self) -> str:
        run = getattr(self.run, "id", None)
        return f"WandbSink(run={run!r}, spool={str(self.spool.path)!r})"


def replay_wandb(spool: str | os.PathLike[str], run: Any = None, **init_options: Any) -> int:
    """Write the records of a spool file into W&B; returns how many. Renames the spool to ``*.replayed``.

    Records the run already holds (the spool is at least once) are skipped.

    Into ``run`` if given (or ``wandb.run``); otherwise ``wandb.init(**init_options)``. When the spool
    lies in an offline W&B run directory (the default place) and no ``id`` is given, the original
    run is resumed (same id and project, ``resume="allow"``); its records already logged count into
    the summary and charts, so these cover the whole run again.
    """
    path = Path(spool)
    prior: list[Record] = []
    run_dir = path.parent
    if any(run_dir.glob("run-*.wandb")):
        log = load_run_log(run_dir)
        prior = read_wandb(run_dir)
        if run is None and "id" not in init_options:
            init_options = {"id": log.run_id, "project": log.project or None, "resume": "allow"} | init_options
            if log.entity:
                init_options.setdefault("entity", log.entity)
    init_options = {k: v for k, v in init_options.items() if v is not None}
    sink = WandbSink(run=run, background=False, init_options=init_options, spool=path.with_suffix(".retry.jsonl"))
    sink.prime(prior)
    count = replay_spool(path, sink, exclude={(r.step, r.quantity) for r in prior})
    sink.close()
    path.rename(path.with_name(path.name + ".replayed"))
    return count
