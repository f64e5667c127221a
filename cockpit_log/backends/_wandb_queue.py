"""A minimal background sender with a local spool, for the W&B sink.

The training thread only enqueues (:meth:`BackgroundSender.put`); one worker thread hands each
batch of records to a ``deliver`` callable. Nothing is dropped and the training thread never waits:

- the queue is bounded (``maxsize`` batches); when it is full, the batch goes straight to the
  spool file instead of waiting;
- when ``deliver`` (or a queued call) raises, that batch and every later one go to the spool (the
  tracker is not called again), with one warning. The ``keep`` batches delivered just before go to
  the spool too: a tracker can accept a call and still drop it when its run ends at that moment
  (W&B does, when a run is finished from another thread), and a sink may hold a step's row back
  until the next batch; so the spool is *at least once*, and a replay skips what the run already
  holds (``replay_spool(..., exclude=...)``);
- at :meth:`~BackgroundSender.close`, what the worker could not deliver within the timeout goes to
  the spool as well (a batch in flight at that moment is spooled too: at least once, never lost).

The spool is the local store's record format (one :func:`~cockpit_log.records.record_to_json` line
per record), so :func:`cockpit_log.read` loads it and :func:`replay_spool` writes it into any sink.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from ..errors import WarnOnce
from ..reading import read_local
from ..records import Record, record_to_json

__all__ = ["BackgroundSender", "Spool", "replay_spool"]


class Spool:
    """Append-only file of undelivered records, in the local JSON-lines record format.

    The file is created on the first :meth:`append`; each append is flushed before it returns.
    Safe to call from several threads.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()

    def append(self, records: Sequence[Record]) -> None:
        """Append ``records`` to the spool file."""
        if not records:
            return
        text = "".join(record_to_json(r) + "\n" for r in records)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
            self.count += len(records)


_STOP = object()


class BackgroundSender:
    """Delivers batches of records from one worker thread; spools what it cannot deliver.

    Args:
        deliver: called on the worker thread with each batch; an exception marks the tracker
            as failed (see the module docstring).
        spool: where undelivered records go.
        warn: reports failures (one warning per kind).
        maxsize: bound of the queue, in batches.
        keep: how many delivered batches are kept to be spooled again if the tracker fails.
        name: thread name.
    """

    def __init__(
        self,
        deliver: Callable[[list[Record]], None],
        spool: Spool,
        warn: WarnOnce,
        maxsize: int = 1000,
        keep: int = 2,
        name: str = "cockpit-log-sender",
    ) -> None:
        self._deliver = deliver
        self.spool = spool
        self._warn = warn
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self._in_flight: list[Record] | None = None
        self._recent: deque[list[Record]] = deque(maxlen=keep)
        self.error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """Whether delivery failed once (every later batch goes to the spool)."""
        return self.error is not None

    def put(self, records: Sequence[Record]) -> None:
        """Enqueue a batch (training thread): never blocks, never raises for a full queue."""
        batch = list(records)
        if not batch:
            return
        if self.failed or self._closed:
            self.spool.append(batch)
            return
        try:
            self._queue.put_nowait(("records", batch))
        except queue.Full:
            self.spool.append(batch)
            self._warn(
                f"wandb-queue-full-{id(self)}",
                f"cockpit-log: the W&B sink fell behind training; records are kept in {self.spool.path} "
                "(replay them later, see the README's W&B section).",
            )

    def call(self, fn: Callable[[], None], what: str, timeout: float = 0.0) -> None:
        """Run ``fn`` on the worker thread, after every batch enqueued before.

        Waits up to ``timeout`` seconds for room in the queue (0: not at all; the call is then
        skipped with a warning). An exception in ``fn`` counts as a tracker failure.
        """
        if self._closed:
            return
        try:
            self._queue.put(("call", fn, what), block=timeout > 0, timeout=timeout if timeout > 0 else None)
        except queue.Full:
            self._warn(f"wandb-call-full-{what}", f"cockpit-log: W&B sink queue full, skipped {what}")

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything enqueued so far was handled (or ``timeout`` seconds); returns whether it was."""
        if self._closed or not self._thread.is_alive():
            return False
        done = threading.Event()
        try:
            self._queue.put(("call", done.set, "flush"), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 60.0) -> bool:
        """Let the worker finish what is queued (up to ``timeout`` seconds), then stop it.

        Whatever was not delivered by then (queued batches and a batch still in flight) is
        written to the spool. Returns whether the worker finished in time.
        """
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        finished = not self._thread.is_alive()
        if not finished:
            with self._lock:
                in_flight, self._in_flight = self._in_flight, None
            self.spool.append([r for batch in self._recent for r in batch] + (in_flight or []))
            self._warn(
                "wandb-close-timeout",
                f"cockpit-log: the W&B sink did not finish within {timeout:g} s; the rest is kept in {self.spool.path}",
            )
        self._drain_to_spool()
        return finished

    def _drain_to_spool(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item[0] == "records":
                self.spool.append(item[1])

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item[0] == "records":
                self._handle_records(item[1])
            else:
                self._handle_call(item[1], item[2])

    def _handle_records(self, batch: list[Record]) -> None:
        if self.failed:
            self.spool.append(batch)
            return
        with self._lock:
            self._in_flight = batch
        try:
            self._deliver(batch)
            self._recent.append(batch)
        except Exception as err:  # noqa: BLE001 - the tracker must never stop training
            self._fail(err, f"logging to W&B failed ({type(err).__name__}: {err})", batch)
        finally:
            with self._lock:
                self._in_flight = None

    def _handle_call(self, fn: Callable[[], None], what: str) -> None:
        if self.failed and what != "flush":
            return
        try:
            fn()
        except Exception as err:  # noqa: BLE001
            self._fail(err, f"W&B {what} failed ({type(err).__name__}: {err})", [])

    def _fail(self, err: Exception, what: str, batch: list[Record]) -> None:
        self.error = err
        self.spool.append([r for recent in self._recent for r in recent] + batch)
        self._recent.clear()
        self._warn(
            "wandb-deliver-failed",
            f"cockpit-log: {what}; training goes on and every record from now on is kept in {self.spool.path}. "
            f"Replay it with `cockpit-log-wandb replay {self.spool.path}`.",
        )


def replay_spool(path: str | os.PathLike[str], sink: Any, exclude: Collection[tuple[int, str]] = frozenset()) -> int:
    """Write the records of a spool file into ``sink``, one ``write`` per step, in step order.

    Works for any sink (``write(records)``); the caller closes it. Records whose ``(step, quantity)``
    is in ``exclude`` (those the run already holds) and repeated ones are skipped. Returns the
    number of records written.
    """
    seen = set(exclude)
    records = []
    for r in sorted(read_local(path), key=lambda r: r.step):
        if (r.step, r.quantity) not in seen:
            seen.add((r.step, r.quantity))
            records.append(r)
    start = 0
    for i in range(1, len(records) + 1):
        if i == len(records) or records[i].step != records[start].step:
            sink.write(records[start:i])
            start = i
    return len(records)
