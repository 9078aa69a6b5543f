"""The sync runner: debounced, with a floor between syncs and a periodic one (client-go's
BoundedFrequencyRunner, as kube-proxy uses it).

- `request()` asks for a sync. It runs at once if the last one started at least `min_interval` ago, else as
  soon as that much time has passed: a burst of changes becomes one sync (min-sync-period).
- With nothing requested, a sync runs every `max_interval` anyway (sync-period): the canary check, retries.
- `retry(after)` after a failure: a sync again after `after` seconds, whatever was requested.

`Schedule` is the pure decision (tested with a fake clock); `SyncRunner` is the thread around it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("dataplane.runner")


@dataclass
class Schedule:
    min_interval: float
    max_interval: float
    last_start: float | None = None  # None: never ran
    requested: bool = False
    retry_at: float | None = None

    def request(self) -> None:
        self.requested = True

    def retry(self, at: float) -> None:
        self.retry_at = at if self.retry_at is None else min(self.retry_at, at)

    def due(self, now: float) -> float:
        """The time of the next sync (<= now: run now)."""
        if self.last_start is None:
            return now
        soonest = self.last_start + self.min_interval
        candidates = [self.last_start + self.max_interval]
        if self.requested:
            candidates.append(soonest)
        if self.retry_at is not None:
            candidates.append(max(self.retry_at, soonest))
        return min(candidates)

    def started(self, now: float) -> None:
        self.last_start = now
        self.requested = False
        self.retry_at = None


class SyncRunner:
    def __init__(
        self,
        sync: Callable[[], None],
        min_interval: float,
        max_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sync = sync
        self._clock = clock
        self._schedule = Schedule(min_interval, max_interval)
        self._wake = threading.Condition()
        self._stopped = False

    def request(self) -> None:
        with self._wake:
            self._schedule.request()
            self._wake.notify()

    def retry(self, after: float) -> None:
        with self._wake:
            self._schedule.retry(self._clock() + after)
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def loop(self) -> None:
        """Run syncs until `stop`; a sync that raises is logged and retried after the floor."""
        while True:
            with self._wake:
                while not self._stopped:
                    wait = self._schedule.due(self._clock()) - self._clock()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                if self._stopped:
                    return
                self._schedule.started(self._clock())
            try:
                self._sync()
            except Exception:  # the sync handles its own errors; this keeps the loop alive regardless
                log.exception("event=sync_crashed")
                self.retry(self._schedule.min_interval)
