"""k8s.workqueue: client-go's dirty/processing semantics, delays, back-off and shutdown (no API server)."""

from __future__ import annotations

import threading
import time

import pytest

from k8s.workqueue import WorkQueue, run_worker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_waits_once_however_often_it_is_added() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [q.get(0), q.get(0), q.get(0), q.get(0)] == ["a", "b", "c", None]


def test_a_key_added_while_processing_is_handed_out_again_only_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")  # changed while a worker holds it
    q.add("a")
    assert q.get(0) is None  # never to a second worker at the same time
    q.done("a")
    assert q.get(0) == "a"  # once more, for the change that came in
    q.done("a")
    assert q.get(0) is None


def test_workers_never_process_one_key_concurrently() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps: list[int] = []
    processed: list[int] = []
    lock = threading.Lock()

    def sync(key: int) -> None:
        with lock:
            if key in active:
                overlaps.append(key)
            active.add(key)
        time.sleep(0.001)
        with lock:
            active.discard(key)
            processed.append(key)

    workers = [threading.Thread(target=run_worker, args=(q, sync)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for round_ in range(200):
        q.add(round_ % 5)
    q.shutdown()  # the workers still drain what is queued, and what is re-added while processing
    for worker in workers:
        worker.join(10)
    assert not overlaps
    assert set(processed) == set(range(5))
    assert not any(worker.is_alive() for worker in workers)


def test_add_after_delays_and_keeps_the_earliest_time() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 5)
    q.add_after("a", 20)
    q.add_after("b", 0)  # no delay: at once
    assert q.get(0) == "b"
    assert q.get(0) is None
    clock.now += 5
    assert q.get(0) == "a"
    q.done("a")
    clock.now += 100
    assert q.get(0) is None  # the later requests for "a" were folded into the first


def test_add_after_wakes_a_waiting_worker_in_real_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    began = time.monotonic()
    q.add_after("late", 0.2)
    assert q.get(5) == "late"
    assert 0.15 < time.monotonic() - began < 4


def test_rate_limited_retries_back_off_exponentially_until_forgotten() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, base_delay=1.0, max_delay=6.0)
    delays = []
    for _ in range(5):
        q.add_rate_limited("a")
        started = clock.now
        while (key := q.get(0)) is None:
            clock.now += 0.5
        assert key == "a"
        q.done("a")
        delays.append(clock.now - started)
    assert delays == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert q.num_requeues("a") == 5
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_shutdown_drains_then_answers_none_and_refuses_new_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("queued")
    q.add_after("delayed", 0.01)
    waiting: list[str | None] = []
    q.shutdown()
    q.add("refused")
    assert q.get() == "queued"  # what was queued is still handed out
    q.done("queued")
    waiter = threading.Thread(target=lambda: waiting.append(q.get()))
    waiter.start()
    waiter.join(5)
    assert waiting == [None] and q.is_shutting_down()


def test_shutdown_wakes_blocked_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    results: list[str | None] = []
    workers = [threading.Thread(target=lambda: results.append(q.get())) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(0.05)
    q.shutdown()
    for worker in workers:
        worker.join(5)
    assert results == [None, None, None]


def test_run_worker_retries_a_failing_key_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01)
    attempts: list[str] = []
    succeeded = threading.Event()

    def sync(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("transient")
        succeeded.set()

    worker = threading.Thread(target=run_worker, args=(q, sync))
    worker.start()
    q.add("k")
    assert succeeded.wait(10)
    q.shutdown()
    worker.join(5)
    assert attempts == ["k", "k", "k"]
    assert q.num_requeues("k") == 0  # forgotten after the success
    assert caplog.text.count("event=sync_failed") == 2
