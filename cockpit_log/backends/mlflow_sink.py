"""The ``"mlflow"`` sink: cockpit readings as MLflow metrics, histogram pictures, params and run summaries.

``sink="mlflow"`` (options through ``sink_options={"mlflow": {...}}``) or ``sink=MLflowSink(...)``.

- **Which run.** The run given as ``run_id``, else the active MLflow run of the thread that attaches
  (``mlflow.active_run()``), else a new run (in ``experiment``, named ``run_name``) that the sink
  ends at close. It ends only a run it started. The tracking URI is MLflow's own setting
  (``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``, else MLflow's local default, a sqlite file
  ``mlflow.db`` in the working directory, no server), unless ``tracking_uri`` is given.
- **What goes where.** See :mod:`cockpit_log.backends.mlflow_ops`: metrics ``cockpit/<quantity>``
  and ``cockpit/<quantity>/<parameter>`` at each record's step; every record in full as JSON Lines
  artifacts under ``cockpit/records/`` (what :func:`read_mlflow` reads back); histogram pictures
  under ``cockpit/images/`` every ``image_every`` steps and for the last histogram at close; params
  ``cockpit/<setting>``; summary metrics ``cockpit/summary/<name>`` at close (e.g.
  ``mlflow.search_runs(filter_string="metrics.`cockpit/summary/alpha_median` > 0")``).
- **Off the training thread.** ``write()`` only numbers the records and enqueues them (a
  :class:`~cockpit_log.backends.queue.BoundedSender`); a background thread hands batches (all
  records of up to ``linger_s`` seconds) to a worker process
  (:mod:`~cockpit_log.backends.mlflow_worker`) that makes the MLflow calls (``log_batch`` of up to
  1000 metrics, one artifact upload) and draws the pictures.
- **Faults.** Each MLflow HTTP call times out after ``timeout_s`` without MLflow's own retries; a
  failed batch stays queued and is retried with backoff (doubling up to 8 s) until the server
  answers. Memory is bounded by ``max_queue_mb``: beyond it, records go to an overflow file on disk
  in order and are sent from there (spill policy: nothing is dropped, training never waits). At
  close the sink sends the backlog, giving up once sending has failed for ``close_timeout_s``
  in a row; what is still undelivered is
  written to a spool file (``spool_dir``), named in one warning, and
  :func:`replay_spool` (``replay_spool(path)``) sends it into the run later. Re-sending is harmless:
  metrics carry fixed timestamps (MLflow drops exact duplicates), artifacts are overwritten, and
  :func:`read_mlflow` drops records it has already seen.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import getpass
import gzip
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from array import array
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow  # the extra 'mlflow' must be installed (the sink registry says so when it is not)

from ..errors import CockpitWarning
from ..records import Histogram1d, Histogram2d, Record, record_from_dict
from ..render import figure_png
from ..summary import run_summary
from ..view.memory import ViewMemory
from .mlflow_ops import (
    END,
    IMAGE,
    PARAMS,
    RECORDS,
    RECORDS_DIR,
    START,
    SUMMARY,
    VIEW,
    Item,
    MlflowWriter,
    item_from_json,
    item_to_json,
    param_key,
    summary_key,
)
from .mlflow_worker import WorkerError, WorkerProcess
from .queue import BoundedSender, JsonlSpill, PermanentError

__all__ = ["SPOOL_FORMAT", "MLflowSink", "read_mlflow", "replay_spool"]

#: first-line marker of a spool file
SPOOL_FORMAT = "cockpit-log mlflow spool v1"


def _default_spool_dir() -> Path:
    return (Path(os.environ.get("COCKPIT_LOG_DIR", "cockpit-runs")) / "mlflow-spool").resolve()


_HISTOGRAMS = (Histogram1d, Histogram2d)


def _hist_bytes(v: object) -> int:
    if isinstance(v, Histogram1d):
        return 8 * (v.counts.size + v.edges.size) + 160
    if isinstance(v, Histogram2d):
        return 8 * (v.counts.size + v.x_edges.size + v.y_edges.size) + 160
    return 96


def _items_size(records: Sequence[Record]) -> int:
    """Rough bytes held by records (what the memory bound counts)."""
    n = 256
    for r in records:
        if not isinstance(r.value, _HISTOGRAMS):
            n += 160 + 96 * len(r.per_param)
        else:
            n += 160 + _hist_bytes(r.value) + sum(_hist_bytes(v) for v in r.per_param.values())
    return n


class _SummaryInputs:
    """The few records :func:`run_summary` needs, kept as the run goes (not every record).

    ``run_summary`` reads every finite Alpha reading, the last finite reading of each scalar
    quantity and the last step; :meth:`records` gives exactly those, so the summary is the same as
    over all records while memory grows only with the number of Alpha readings (16 bytes each).
    Called on the training thread for every record: kept to a few comparisons.
    """

    def __init__(self) -> None:
        self.alpha_steps = array("q")
        self.alpha_values = array("d")
        self.last: dict[str, Record] = {}
        self.latest: Record | None = None

    def add(self, record: Record) -> None:
        step, value = record.step, record.value
        if self.latest is None or step >= self.latest.step:
            self.latest = record
        if isinstance(value, _HISTOGRAMS) or not math.isfinite(value):
            return
        q = record.quantity
        if q == "Alpha":
            self.alpha_steps.append(step)
            self.alpha_values.append(value)
        prev = self.last.get(q)
        if prev is None or step >= prev.step:
            self.last[q] = record

    def records(self) -> list[Record]:
        out = [Record(s, "Alpha", v) for s, v in zip(self.alpha_steps, self.alpha_values)]
        out.extend(Record(r.step, q, r.value) for q, r in self.last.items() if q != "Alpha")
        if self.latest is not None:
            out.append(Record(self.latest.step, self.latest.quantity, math.nan))  # only sets the last step
        return out


class MLflowSink:
    """Streams cockpit records into an MLflow run (see the module docstring).

    Args:
        tracking_uri: MLflow tracking URI; default: MLflow's own setting.
        experiment: experiment name for a run the sink starts (created if missing); default:
            ``MLFLOW_EXPERIMENT_ID``/``MLFLOW_EXPERIMENT_NAME`` (``mlflow.set_experiment`` sets
            the former), else MLflow's default experiment.
        run_name: name of a run the sink starts.
        run_id: log into this existing run (not ended by the sink).
        tags: tags set on the run.
        image_every: draw the histogram pictures at steps that are multiples of this (and the
            last histogram of each quantity at close); ``None`` or 0: no pictures.
        linger_s: collect records this long before sending them as one batch.
        timeout_s: timeout of each MLflow HTTP call (no retries inside MLflow: the sink retries).
        close_timeout_s: at close, give up on the backlog (and spool it) once every attempt to send
            it has failed for this long; a tracker that still takes batches is waited for.
        max_queue_mb: memory bound of the queue; beyond it records overflow to a file on disk.
        spool_dir: directory of overflow and spool files; default ``cockpit-runs/mlflow-spool``
            (under ``$COCKPIT_LOG_DIR`` when set).
        view: store the cockpit view (:func:`cockpit_log.view.cockpit_view`) as ``cockpit/view.png``
            at close (default ``True``); the sink keeps every scalar record and the latest histogram
            of each quantity for it (:class:`cockpit_log.view.memory.ViewMemory`).
        view_png: another picture instead: a callable returning PNG bytes, called once at close.

    Attributes:
        run_id: the MLflow run (known once the first batch arrived, or at once for an active run).
        spool_path: the spool file written at close, if anything was left undelivered.
        undelivered: the items left undelivered at close (also in the spool file).
        close_seconds: how long :meth:`close` took to deliver the backlog (the end-of-run flush).
    """

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        image_every: int | None = 1000,
        linger_s: float = 5.0,
        timeout_s: float = 10.0,
        close_timeout_s: float = 15.0,
        max_queue_mb: float = 64.0,
        spool_dir: str | os.PathLike[str] | None = None,
        view: bool = True,
        view_png: Callable[[], bytes] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        if run_id is None and (tracking_uri is None or tracking_uri == mlflow.get_tracking_uri()):
            active = mlflow.active_run()
            run_id = active.info.run_id if active is not None else None
        self.started_run = run_id is None
        self.run_id: str | None = run_id
        self.image_every = image_every or 0
        self.close_timeout_s = close_timeout_s
        self._view_memory = ViewMemory() if view and view_png is None else None
        if self._view_memory is not None:
            view_png = self._default_view_png
        self.view_png = view_png
        self.spool_dir = Path(spool_dir).resolve() if spool_dir is not None else _default_spool_dir()
        self.spool_path: Path | None = None
        self.close_seconds: float | None = None
        self.undelivered: list[Item] = []
        self.sink_id = uuid.uuid4().hex
        self._seq = itertools.count()
        self._summary = _SummaryInputs()
        self._last_hist: dict[str, Record] = {}
        self._imaged: dict[str, int] = {}
        self._params_sent: dict[str, str] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._worker = WorkerProcess(self.tracking_uri, timeout_s=timeout_s, reply_timeout_s=max(120.0, 12 * timeout_s))
        self._spill: JsonlSpill[Item] = JsonlSpill(
            self.spool_dir / f"overflow-{self.sink_id}.jsonl", item_to_json, item_from_json
        )
        self._sender: BoundedSender[Item] = BoundedSender(
            self._deliver,
            max_bytes=int(max_queue_mb * (1 << 20)),
            size_of=lambda item: item.size,
            max_batch=20_000,
            linger_s=linger_s,
            spill=self._spill,
            name="cockpit-log-mlflow",
        )
        self._sender.put([Item(next(self._seq), _now_ms(), START, data=self._start_data(experiment, run_name, tags))])
        try:
            self._worker.start()  # imports MLflow in the background while training starts
        except OSError as err:  # retried with the first batch
            self._sender.last_error = err
        _OPEN.add(self)

    # ------------------------------------------------------------------ sink protocol
    def write(self, records: Sequence[Record]) -> None:
        """Enqueue one step's records (training thread; returns at once)."""
        if self._closed:
            raise RuntimeError("the MLflow sink is closed")
        records = tuple(records)
        if not records:
            return
        images = []
        with self._lock:
            if self._view_memory is not None:
                self._view_memory.add(records)
            for i, r in enumerate(records):
                self._summary.add(r)
                if isinstance(r.value, _HISTOGRAMS):
                    self._last_hist[r.quantity] = r
                    if self.image_every and r.step % self.image_every == 0:
                        images.append(i)
                        self._imaged[r.quantity] = r.step
            item = Item(next(self._seq), _now_ms(), RECORDS, records, tuple(images), size=_items_size(records))
        self._sender.put((item,))

    def _default_view_png(self) -> bytes:
        assert self._view_memory is not None
        fig = self._view_memory.figure()
        return figure_png(fig) if fig is not None else b""

    def set_run_info(self, info: Mapping[str, Any]) -> None:
        """Log the cockpit's settings as params ``cockpit/<name>`` (called by the cockpit; may be called again).

        Reads ``quantities`` (list of quantity descriptions), ``schedule``, ``optimizer``, ``lr``,
        ``batch_size``, ``num_params``, ``model``, ``automatic``, ``cockpit_log_version``, ``world_size``
        (processes of a data-parallel run; ``batch_size`` is then the global batch); missing or
        ``None`` entries are left out. MLflow params cannot change: a later call adds new names
        only, and a changed value is not logged again.
        """
        if self._closed:
            return
        names = {
            "quantities": "quantities",
            "schedule": "schedule",
            "optimizer": "optimizer",
            "lr": "lr",
            "batch_size": "batch_size",
            "num_params": "num_params",
            "model": "model",
            "automatic": "automatic",
            "cockpit_log_version": "version",
            "world_size": "world_size",
        }
        new: dict[str, str] = {}
        for src, name in names.items():
            value = info.get(src)
            if value is None:
                continue
            text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            key = param_key(name)
            if key not in self._params_sent:
                new[key] = text
        if new:
            self._params_sent.update(new)
            self._sender.put([Item(next(self._seq), _now_ms(), PARAMS, data={"params": new})])

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything written so far now; ``True`` if it was all delivered within ``timeout`` s."""
        return self._sender.flush(timeout)

    def close(self) -> None:
        """Summary, last pictures and end of run; deliver the backlog, spool what is left (one warning)."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        ts = _now_ms()
        items: list[Item] = []
        with self._lock:
            summary = run_summary(self._summary.records())
            finite = {summary_key(k): v for k, v in summary.items() if math.isfinite(v)}
            if finite and self._summary.latest is not None:
                data = {"metrics": finite, "step": self._summary.latest.step}
                items.append(Item(next(self._seq), ts, SUMMARY, data=data))
            last = tuple(r for q, r in self._last_hist.items() if self._imaged.get(q) != r.step)
            if self.image_every and last:
                items.append(Item(next(self._seq), ts, IMAGE, last, size=_items_size(last)))
        if self.view_png is not None:
            try:
                png = self.view_png()
                if png:
                    data = {"png_b64": base64.b64encode(png).decode("ascii")}
                    items.append(Item(next(self._seq), ts, VIEW, data=data))
            except Exception as err:  # noqa: BLE001 - a picture must not cost the run's data
                warnings.warn(f"cockpit-log: the cockpit view for MLflow failed: {err}", CockpitWarning, stacklevel=2)
        if self.started_run:
            items.append(Item(next(self._seq), ts, END, data={"status": "FINISHED"}))
        self._sender.put(items)
        t0 = time.perf_counter()
        left = self._sender.close(self._worker.reply_timeout_s + self.close_timeout_s, patience=self.close_timeout_s)
        self.close_seconds = time.perf_counter() - t0
        if left:
            self._worker.kill()  # a call may still be under way
        self._worker.close()
        self._spill.close(delete=True)
        self.undelivered = left
        if left:
            error = self._sender.last_error
            try:
                self.spool_path = self._write_spool(left)
            except OSError as err:
                warnings.warn(
                    f"cockpit-log: MLflow did not take {len(left)} item(s) ({error}) and the spool file could not be "
                    f"written ({err}); they are kept in sink.undelivered",
                    CockpitWarning,
                    stacklevel=2,
                )
                return
            warnings.warn(
                f"cockpit-log: MLflow did not take {len(left)} item(s) of run {self.run_id or '(not created)'} "
                f"at {self.tracking_uri} ({type(error).__name__ if error else 'timeout'}: {error}); they are in "
                f"{self.spool_path}. Send them later with: cockpit-log replay {self.spool_path}",
                CockpitWarning,
                stacklevel=2,
            )

    @property
    def stats(self) -> Any:
        """The queue's counters (:class:`~cockpit_log.backends.queue.SenderStats`)."""
        return self._sender.stats

    @property
    def pending(self) -> int:
        """Items not yet delivered."""
        return self._sender.pending

    @property
    def memory_bytes(self) -> int:
        """Estimated bytes of records held in memory by the queue now."""
        return self._sender.memory_bytes

    def __repr__(self) -> str:
        return f"MLflowSink(tracking_uri={self.tracking_uri!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------------ internals
    def _start_data(self, experiment: str | None, run_name: str | None, tags: Mapping[str, Any] | None) -> dict:
        all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        all_tags.setdefault("cockpit_log", _version())
        data: dict[str, Any] = {"sink_id": self.sink_id, "tags": all_tags}
        if self.started_run:
            all_tags.setdefault("mlflow.source.name", os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "")
            all_tags.setdefault("mlflow.source.type", "LOCAL")
            with contextlib.suppress(Exception):  # no user name is fine
                all_tags.setdefault("mlflow.user", getpass.getuser())
            if experiment is not None:
                data["experiment_name"] = experiment
            elif os.environ.get("MLFLOW_EXPERIMENT_ID"):
                data["experiment_id"] = os.environ["MLFLOW_EXPERIMENT_ID"]
            elif os.environ.get("MLFLOW_EXPERIMENT_NAME"):
                data["experiment_name"] = os.environ["MLFLOW_EXPERIMENT_NAME"]
            if run_name is not None:
                data["run_name"] = run_name
        return data

    def _deliver(self, batch: list[Item]) -> None:
        try:
            reply = self._worker.call({"cmd": "deliver", "run_id": self.run_id, "items": batch})
        except WorkerError as err:
            if err.run_id:
                self.run_id = err.run_id
            if err.permanent:
                raise PermanentError(str(err)) from err
            raise
        self.run_id = reply.get("run_id") or self.run_id

    def _write_spool(self, items: list[Item]) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"mlflow-{self.run_id or 'new-run'}-{self.sink_id[:8]}.jsonl"
        header = {"format": SPOOL_FORMAT, "tracking_uri": self.tracking_uri, "run_id": self.run_id}
        unique = {it.seq: it for it in items}
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(header) + "\n")
            for seq in sorted(unique):
                f.write(item_to_json(unique[seq]) + "\n")
        return path


_OPEN: weakref.WeakSet[MLflowSink] = weakref.WeakSet()


@atexit.register
def _close_open_sinks() -> None:
    """A script that ends without ``ck.close()`` still delivers (or spools) what its MLflow sinks hold."""
    for sink in list(_OPEN):
        try:
            sink.close()
        except Exception as err:  # noqa: BLE001 - exiting anyway
            warnings.warn(f"cockpit-log: closing the MLflow sink at exit failed: {err}", CockpitWarning, stacklevel=1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cockpit-log")
    except Exception:  # noqa: BLE001
        return "unknown"


def _run_id_from_ref(ref: str) -> str:
    text = ref.removeprefix("mlflow:")
    if text.startswith("runs:/"):
        text = text.removeprefix("runs:/").split("/", 1)[0]
    if not text:
        raise ValueError(f"no run id in {ref!r} (expected '<run_id>', 'runs:/<run_id>' or 'mlflow:<run_id>')")
    return text


def read_mlflow(ref: str, tracking_uri: str | None = None) -> list[Record]:
    """All cockpit records of an MLflow run, in the order they were written.

    Args:
        ref: the run: ``"<run_id>"``, ``"runs:/<run_id>"`` or ``"mlflow:<run_id>"``.
        tracking_uri: default: MLflow's own setting (as for the sink).

    Reads the ``cockpit/records/`` artifacts (every record in full, histograms included); a
    record that arrived twice (a retried batch, a replayed spool) is returned once.

    Raises:
        FileNotFoundError: the run has no cockpit records.
    """
    from mlflow import MlflowClient

    run_id = _run_id_from_ref(ref)
    uri = tracking_uri or mlflow.get_tracking_uri()
    if not MlflowClient(uri).list_artifacts(run_id, RECORDS_DIR):
        raise FileNotFoundError(f"MLflow run {run_id} at {uri} has no cockpit records ({RECORDS_DIR}/)")
    by_key: dict[tuple[int, int], Record] = {}
    with tempfile.TemporaryDirectory(prefix="cockpit-read-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=RECORDS_DIR, dst_path=tmp, tracking_uri=uri
        )
        for part in sorted(Path(local).glob("part-*.jsonl*")):
            raw = part.read_bytes()
            text = (gzip.decompress(raw) if part.name.endswith(".gz") else raw).decode("utf-8")
            for line in text.splitlines():
                if line.strip():
                    d = json.loads(line)
                    by_key.setdefault((int(d["seq"]), int(d.get("i", 0))), record_from_dict(d["record"]))
    return [by_key[k] for k in sorted(by_key)]


def replay_spool(path: str | os.PathLike[str], tracking_uri: str | None = None, batch: int = 5000) -> str:
    """Send a spool file written by :class:`MLflowSink` at close into its run; returns the run id.

    Creates the run if it was never created (the tracker was down from the start), finishes it if
    the sink had started it, and renames the file to ``*.replayed``. Safe to repeat: nothing is
    logged twice.

    Args:
        path: the spool file named in the sink's warning.
        tracking_uri: where to send it; default: the tracking URI the run was using.
        batch: items per MLflow round trip.
    """
    from mlflow import MlflowClient

    path = Path(path)
    with open(path, encoding="utf-8") as f:
        header = json.loads(f.readline())
        if header.get("format") != SPOOL_FORMAT:
            raise ValueError(f"{path} is no cockpit-log MLflow spool file")
        items = [item_from_json(line) for line in f if line.strip()]
    writer = MlflowWriter(MlflowClient(tracking_uri or header["tracking_uri"]), header.get("run_id"))
    starts = [it for it in items if it.kind == START]
    rest = [it for it in items if it.kind != START]
    for i in range(0, max(len(rest), 1), batch):
        chunk = (starts if i == 0 else []) + rest[i : i + batch]
        if chunk:
            writer.apply(chunk)
    path.rename(path.with_name(path.name + ".replayed"))
    assert writer.run_id is not None
    return writer.run_id
