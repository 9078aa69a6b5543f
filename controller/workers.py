"""The Service work queue, served by coroutines on the event loop.

The queue is k8s.workqueue.WorkQueue (client-go's semantics: a key waits at most once; a key being handled
is never handed to a second worker, and one added meanwhile is handled again afterwards). Its keys are added
and taken on the event loop only, so a worker never blocks: it takes a key at once or sleeps until `add`
wakes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from controller import metrics
from k8s.workqueue import WorkQueue

log = logging.getLogger("controller")

CRASH_RETRY = 2.0  # seconds before a key whose reconciliation raised is tried again


class Workers:
    def __init__(self, sync: Callable[[str], Awaitable[None]]) -> None:
        self.queue: WorkQueue[str] = WorkQueue("services")
        self._sync = sync
        self._idle: deque[asyncio.Future[None]] = deque()

    def add(self, key: str) -> None:
        self.queue.add(key)
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def run(self) -> None:
        """One worker: forever take a key and reconcile it."""
        loop = asyncio.get_running_loop()
        while True:
            key = self.queue.get(timeout=0)
            if key is None:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            try:
                await self._sync(key)
            except Exception:
                metrics.update_errors.inc()
                log.exception("event=reconcile_crashed service=%s", key)
                self.add_after(key, CRASH_RETRY)
            finally:
                self.queue.done(key)
                if len(self.queue):
                    self._wake_one()  # done() queued it again: someone must take it
