"""A bounded background sender for tracker sinks: the training thread only enqueues.

:class:`BoundedSender` takes items from the training thread (:meth:`~BoundedSender.put` costs a lock
and an append, it never waits for the tracker) and hands them to a ``deliver(batch)`` callable on
its own daemon thread, in batches, in the order they were put.

**The deliver contract.** ``deliver(batch)`` is called on the sender thread with a non-empty list
of items, oldest first, at most ``max_batch`` of them.

- It returns normally when every item of the batch was delivered.
- It raises any other exception for a *transient* failure (tracker down, timeout): the same batch
  is retried after a backoff (``backoff_s``, doubling up to its maximum) until it succeeds or the
  sender is closed. Delivery is therefore *at least once*: ``deliver`` must be idempotent (e.g.
  fixed timestamps, content-derived artifact names).
- It raises :class:`PermanentError` for a batch the destination will never take (bad request):
  the batch is set aside in :attr:`~BoundedSender.rejected`, kept, and the sender goes on.

**Memory policy: spill to disk, never drop, never block.** Items are held in memory up to
``max_bytes`` (as estimated by ``size_of``). When an item does not fit, it and every item after it
go to ``spill`` (a :class:`JsonlSpill` file) instead, until the sender has read the spill back:
so under a tracker slower than training, memory stays bounded, the backlog grows on disk, the
order is kept and nothing is lost. Without a spill the memory bound is not enforced (items are
kept in memory). If writing the spill fails (disk full), the items stay in memory and the error
is reported in :attr:`~BoundedSender.last_error`.

**Closing.** :meth:`~BoundedSender.close` delivers what it can until its timeout and returns the
items it could not deliver (the failing batch, the memory queue, the unread spill, and rejected
batches), oldest first, so the caller can keep them (e.g. in a spool file for a later replay).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["BoundedSender", "JsonlSpill", "PermanentError", "SenderStats"]

T = TypeVar("T")


class PermanentError(Exception):
    """Raised by ``deliver`` for a batch the destination will never accept; the batch is set aside."""


class JsonlSpill(Generic[T]):
    """A first-in first-out overflow file: one item per line, written with ``encode``, read with ``decode``.

    ``encode`` must return one line of text without a newline (e.g. compact JSON). The file is
    created on the first :meth:`append` and truncated once everything in it was taken, so its size
    is the backlog, not the history. Safe to use from two threads (one appending, one taking).
    """

    def __init__(self, path: str | os.PathLike[str], encode: Callable[[T], str], decode: Callable[[str], T]) -> None:
        self.path = Path(path)
        self._encode = encode
        self._decode = decode
        self._lock = threading.Lock()
        self._count = 0
        self._offset = 0
        self._file = None

    def __len__(self) -> int:
        """Items appended and not yet taken."""
        return self._count

    def append(self, items: Iterable[T]) -> None:
        """Append ``items`` at the end of the file (flushed to the operating system)."""
        lines = [self._encode(item) for item in items]
        if not lines:
            return
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a+b")  # noqa: SIM115 - kept open while spilling
            self._file.seek(0, os.SEEK_END)
            self._file.write(("\n".join(lines) + "\n").encode("utf-8"))
            self._file.flush()
            self._count += len(lines)

    def take(self, n: int) -> list[T]:
        """Remove and return up to ``n`` of the oldest items."""
        with self._lock:
            if self._file is None or self._count == 0 or n <= 0:
                return []
            self._file.seek(self._offset)
            out: list[T] = []
            while len(out) < n:
                line = self._file.readline()
                if not line:
                    break
                out.append(self._decode(line.decode("utf-8")))
            self._offset = self._file.tell()
            self._count -= len(out)
            if self._count == 0:  # everything read back: start the file afresh
                self._file.seek(0)
                self._file.truncate()
                self._offset = 0
            return out

    def close(self, delete: bool = True) -> None:
        """Close the file; delete it when ``delete`` (the default)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if delete:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()


class SenderStats:
    """Counters of a :class:`BoundedSender` (read them at any time; they are updated in place)."""

    def __init__(self) -> None:
        self.put = 0  #: items put
        self.delivered = 0  #: items delivered
        self.batches = 0  #: successful ``deliver`` calls
        self.failures = 0  #: failed ``deliver`` calls (each retried)
        self.spilled = 0  #: items that went to the spill file
        self.max_memory_bytes = 0  #: the largest estimated size of the in-memory queue seen

    def __repr__(self) -> str:
        return "SenderStats(" + ", ".join(f"{k}={v}" for k, v in vars(self).items()) + ")"


class BoundedSender(Generic[T]):
    """Delivers items on a background thread, in batches, with a bounded in-memory queue (see module docs).

    Args:
        deliver: ``deliver(batch)``, called on the sender thread; see the module docstring.
        max_bytes: bound of the in-memory queue, in the units of ``size_of``.
        size_of: estimated size of an item (default: every item counts 1).
        max_batch: most items per ``deliver`` call.
        linger_s: after the first item of a batch arrives, wait this long for more before
            delivering (fewer, larger batches); :meth:`flush` and :meth:`close` cut it short.
        spill: where items go once the memory bound is reached; ``None``: no bound.
        backoff_s: ``(first, maximum)`` wait before retrying a failed batch; doubles each time.
        name: the thread's name.
    """

    def __init__(
        self,
        deliver: Callable[[list[T]], None],
        *,
        max_bytes: int = 64 << 20,
        size_of: Callable[[T], int] | None = None,
        max_batch: int = 1000,
        linger_s: float = 1.0,
        spill: JsonlSpill[T] | None = None,
        backoff_s: tuple[float, float] = (0.25, 8.0),
        name: str = "cockpit-log-sender",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._deliver = deliver
        self._max_bytes = max_bytes
        self._size_of = size_of or (lambda item: 1)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._spill = spill
        self._backoff = backoff_s
        self._cv = threading.Condition()
        self._memory: deque[tuple[T, int]] = deque()
        self._memory_bytes = 0
        self._first_arrival: float | None = None
        self._inflight: list[T] | None = None
        self._flushing = 0
        self._nudges = 0  # flush() and close() cut a backoff short
        self._closing = False
        self._abandoned = False
        self._failing_since: float | None = None  # first failure since the last success
        self.rejected: list[tuple[list[T], BaseException]] = []
        self.last_error: BaseException | None = None
        self.stats = SenderStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    @property
    def memory_bytes(self) -> int:
        """Estimated size of the items held in memory now."""
        return self._memory_bytes

    @property
    def pending(self) -> int:
        """Items put and not yet delivered (in memory, spilled, or in the batch being delivered)."""
        with self._cv:
            return self._pending_locked()

    def _pending_locked(self) -> int:
        spilled = len(self._spill) if self._spill is not None else 0
        return len(self._memory) + spilled + (len(self._inflight) if self._inflight else 0)

    def put(self, items: Iterable[T]) -> None:
        """Hand items over (training thread). Never waits for the destination; see the memory policy."""
        items = list(items)
        if not items:
            return
        with self._cv:
            was_empty = self._available_locked() == 0
            self.stats.put += len(items)
            overflow: list[T] = []
            for item in items:
                size = self._size_of(item)
                spilling = self._spill is not None and (
                    len(self._spill) > 0 or overflow or (self._memory and self._memory_bytes + size > self._max_bytes)
                )
                if spilling:
                    overflow.append(item)
                else:
                    self._memory.append((item, size))
                    self._memory_bytes += size
            if overflow:
                try:
                    self._spill.append(overflow)  # type: ignore[union-attr]
                    self.stats.spilled += len(overflow)
                except Exception as err:  # noqa: BLE001 - disk trouble must not reach training: keep in memory
                    self.last_error = err
                    for item in overflow:
                        size = self._size_of(item)
                        self._memory.append((item, size))
                        self._memory_bytes += size
            self.stats.max_memory_bytes = max(self.stats.max_memory_bytes, self._memory_bytes)
            if self._first_arrival is None:
                self._first_arrival = time.monotonic()
            if was_empty or self._available_locked() >= self._max_batch:
                self._cv.notify_all()  # otherwise the sender is lingering and wakes by itself

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything put so far, without lingering; ``True`` if all of it was delivered in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._flushing += 1
            self._nudges += 1
            self._cv.notify_all()
            try:
                while self._pending_locked() > 0 and self._thread.is_alive():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cv.wait(remaining)
                return self._pending_locked() == 0
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = 30.0, patience: float | None = None) -> list[T]:
        """Deliver what is pending, stop the thread, return what was not delivered.

        Gives up after ``timeout`` s in all, or earlier once every delivery has failed for
        ``patience`` s in a row (counted from the call at the earliest): a destination that is
        down is not waited for, a slow one that still takes batches is.

        The returned items, oldest first, include the rejected batches and a batch whose delivery
        was still under way when it gave up (it may have arrived too: delivery is at least once).
        """
        start = time.monotonic()
        with self._cv:
            self._closing = True
            self._nudges += 1
            self._cv.notify_all()
        while self._thread.is_alive():
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                break
            failing = self._failing_since
            if patience is not None and failing is not None and now - max(failing, start) >= patience:
                break
            self._thread.join(0.05)
        with self._cv:
            self._abandoned = True
            self._cv.notify_all()
            left: list[T] = [item for batch, _ in self.rejected for item in batch]
            if self._inflight:
                left.extend(self._inflight)
            left.extend(item for item, _ in self._memory)
            self._memory.clear()
            self._memory_bytes = 0
            if self._spill is not None:
                while len(self._spill):
                    left.extend(self._spill.take(10_000))
        return left

    # ------------------------------------------------------------------ sender thread
    def _available_locked(self) -> int:
        return len(self._memory) + (len(self._spill) if self._spill is not None else 0)

    def _next_batch(self) -> list[T] | None:
        """The next batch to deliver (waits for items and lingers); ``None`` when closing with nothing left."""
        with self._cv:
            while True:
                if self._abandoned:
                    return None
                available = self._available_locked()
                if available == 0:
                    self._first_arrival = None
                    if self._closing:
                        return None
                    self._cv.wait()
                    continue
                if self._closing or self._flushing or available >= self._max_batch:
                    break
                first = self._first_arrival if self._first_arrival is not None else time.monotonic()
                wait = first + self._linger_s - time.monotonic()
                if wait <= 0:
                    break
                self._cv.wait(wait)
            batch: list[T] = []
            while self._memory and len(batch) < self._max_batch:
                item, size = self._memory.popleft()
                self._memory_bytes -= size
                batch.append(item)
            if len(batch) < self._max_batch and self._spill is not None:
                batch.extend(self._spill.take(self._max_batch - len(batch)))
            self._first_arrival = time.monotonic() if self._available_locked() else None
            self._inflight = batch
            return batch

    def _run(self) -> None:
        backoff = self._backoff[0]
        while True:
            with self._cv:
                batch = self._inflight
            if batch is None:
                try:
                    batch = self._next_batch()
                except Exception as err:  # noqa: BLE001 - e.g. an unreadable spill line; keep running
                    self.last_error = err
                    time.sleep(self._backoff[0])
                    continue
            if batch is None:
                return
            try:
                self._deliver(batch)
            except PermanentError as err:
                with self._cv:
                    self.rejected.append((batch, err))
                    self.last_error = err
                    self._inflight = None
                    self._cv.notify_all()
                continue
            except Exception as err:  # noqa: BLE001 - transient: retry the same batch after a backoff
                with self._cv:
                    self.stats.failures += 1
                    self.last_error = err
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    if self._abandoned:
                        return
                    nudges = self._nudges
                    deadline = time.monotonic() + backoff
                    while not self._abandoned and nudges == self._nudges:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cv.wait(remaining)
                    nudged = nudges != self._nudges
                backoff = self._backoff[0] if nudged else min(backoff * 2, self._backoff[1])
                continue
            with self._cv:
                self._inflight = None
                self._failing_since = None
                self.stats.delivered += len(batch)
                self.stats.batches += 1
                self._cv.notify_all()
            backoff = self._backoff[0]
