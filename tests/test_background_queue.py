"""The bounded background sender: order, no loss, bounded memory, retries, rejected batches, closing."""

from __future__ import annotations

import threading
import time

import pytest

from cockpit_log.backends.queue import BoundedSender, JsonlSpill, PermanentError


def int_spill(path) -> JsonlSpill[int]:  # noqa: ANN001
    return JsonlSpill(path, str, int)


def test_spill_is_fifo_and_truncates_when_drained(tmp_path) -> None:
    spill = int_spill(tmp_path / "s.jsonl")
    spill.append(range(5))
    assert spill.take(3) == [0, 1, 2]
    spill.append([5, 6])
    assert len(spill) == 4
    assert spill.take(10) == [3, 4, 5, 6]
    assert (tmp_path / "s.jsonl").stat().st_size == 0  # drained: the file starts afresh
    spill.append([7])
    assert spill.take(1) == [7]
    spill.close()
    assert not (tmp_path / "s.jsonl").exists()


def test_slow_destination_memory_stays_bounded_and_nothing_is_lost(tmp_path) -> None:
    delivered: list[int] = []

    def slow(batch: list[int]) -> None:
        time.sleep(0.002)
        delivered.extend(batch)

    sender = BoundedSender(slow, max_bytes=50, max_batch=7, linger_s=0.0, spill=int_spill(tmp_path / "spill"))
    worst = 0
    for i in range(0, 2000, 10):
        sender.put(range(i, i + 10))
        worst = max(worst, sender.memory_bytes)
    assert worst <= 50 and sender.stats.max_memory_bytes <= 50
    assert sender.stats.spilled > 0  # the destination was slower than the producer
    assert sender.flush(timeout=60)
    assert delivered == list(range(2000))  # every item once, in order
    assert sender.close(timeout=5) == []


def test_put_never_waits_for_a_blocked_destination(tmp_path) -> None:
    release = threading.Event()
    sender = BoundedSender(lambda batch: release.wait(), max_bytes=100, spill=int_spill(tmp_path / "spill"))
    t0 = time.perf_counter()
    for i in range(5000):
        sender.put([i])
    assert time.perf_counter() - t0 < 2.0
    assert sender.memory_bytes <= 100
    release.set()
    assert sender.flush(timeout=30)
    sender.close()


def test_failed_batches_are_retried_until_delivered() -> None:
    calls: list[list[int]] = []
    failures = iter([True, True, True])

    def flaky(batch: list[int]) -> None:
        calls.append(list(batch))
        if next(failures, False):
            raise ConnectionError("tracker down")

    sender = BoundedSender(flaky, max_batch=4, linger_s=0.0, backoff_s=(0.01, 0.02))
    sender.put(range(10))
    assert sender.flush(timeout=10)
    assert sender.stats.failures == 3
    assert calls[0] == calls[1] == calls[2] == calls[3]  # the same batch until it went through
    firsts = list(dict.fromkeys(i for batch in calls for i in batch))
    assert firsts == list(range(10))
    assert isinstance(sender.last_error, ConnectionError)
    sender.close()


def test_rejected_batch_is_kept_and_the_rest_goes_on() -> None:
    delivered: list[int] = []

    def picky(batch: list[int]) -> None:
        if 3 in batch:
            raise PermanentError("bad request")
        delivered.extend(batch)

    sender = BoundedSender(picky, max_batch=2, linger_s=0.0)
    sender.put(range(8))
    assert sender.flush(timeout=10)
    assert delivered == [0, 1, 4, 5, 6, 7]
    assert sender.close(timeout=5) == [2, 3]  # returned for the spool


def test_close_returns_everything_undelivered_in_order(tmp_path) -> None:
    def down(batch: list[int]) -> None:
        raise ConnectionError("refused")

    sender = BoundedSender(down, max_bytes=5, max_batch=3, linger_s=0.0, spill=int_spill(tmp_path / "spill"))
    sender.put(range(20))
    t0 = time.perf_counter()
    left = sender.close(timeout=0.5)
    assert time.perf_counter() - t0 < 3
    assert left == list(range(20))


def test_linger_collects_a_batch() -> None:
    batches: list[list[int]] = []
    sender = BoundedSender(batches.append, linger_s=0.3, max_batch=100)
    for i in range(10):
        sender.put([i])
    time.sleep(0.6)
    sender.close()
    assert batches == [list(range(10))]


def test_invalid_batch_size() -> None:
    with pytest.raises(ValueError):
        BoundedSender(lambda b: None, max_batch=0)
