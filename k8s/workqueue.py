"""A work queue of keys with client-go's semantics, for controllers that reconcile one object at a time.

- A key waits in the queue at most once, however often it is added (dirty set).
- A key being processed is never handed out again until `done(key)`; if it was added meanwhile, it is queued
  again then, so the change that came in during processing is not lost (processing set).
- `add_after` delays a key; `add_rate_limited` retries a failing key with exponential back-off per key,
  reset by `forget`.
- `shutdown` wakes every waiting worker; `get` hands out what is still queued, then answers None.

Thread-safe; no thread of its own (delayed keys are promoted by the workers waiting in `get`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("k8s.workqueue")

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str = "",
        *,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, float] = {}  # key -> when it is due (the earliest asked for)
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutting_down = False
        self._cond = threading.Condition()

    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds have passed (at the earliest of several such requests)."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            due = self._clock() + delay
            if key in self._waiting and self._waiting[key] <= due:
                return
            self._waiting[key] = due
            heapq.heappush(self._heap, (due, next(self._sequence), key))
            self._cond.notify()  # a worker may have to wake earlier than it planned

    def add_rate_limited(self, key: K) -> None:
        """Retry `key` after base_delay * 2^(failures so far), at most max_delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        self.add_after(key, min(self.base_delay * (2**failures), self.max_delay))

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the back-off afresh."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> K | None:
        """The next key, which the caller owns until done(key); None once shut down and drained, or when
        `timeout` passes first."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                self._promote_due(now)
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                if self._shutting_down:
                    return None
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return None
                if self._heap:
                    until_due = self._heap[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)

    def _promote_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) == due:
                del self._waiting[key]
                self._add_locked(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        """Refuse new keys and drop delayed ones; workers drain what is queued, then get() answers None."""
        with self._cond:
            self._shutting_down = True
            self._heap.clear()
            self._waiting.clear()
            self._cond.notify_all()

    def is_shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def __len__(self) -> int:
        """Keys ready to be handed out (not those delayed or being processed)."""
        with self._cond:
            return len(self._queue)


def run_worker(queue: WorkQueue[K], sync: Callable[[K], None]) -> None:
    """Take keys until the queue shuts down: sync each; a failure is logged and retried with back-off."""
    while True:
        key = queue.get()
        if key is None:
            return
        try:
            sync(key)
        except Exception:
            retries = queue.num_requeues(key)
            log.exception("event=sync_failed queue=%s key=%s retries=%d", queue.name, key, retries)
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        finally:
            queue.done(key)
