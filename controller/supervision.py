"""What keeps the controller honest about its own health: its long-running tasks and its event loop.

Every task the controller spawns runs until cleanup; one that ends before is a bug or an unforeseen failure:
liveness fails at once and the operator stops (releasing the Lease), so the pod restarts. A heartbeat shows
that the event loop still runs: a handler stuck in a loop fails liveness after `stall_limit` seconds. The
probes are served by k8s.serving.HealthServer from a thread of its own, which answers even while the loop is
stuck: that is why the loop's heartbeat is checked rather than the server merely running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from k8s.serving import HealthServer

log = logging.getLogger("controller")

STALL_LIMIT = 30.0  # seconds without a heartbeat before the loop counts as stuck
HEARTBEAT = 1.0


class Health:
    """What the probes report. Written from the event loop, read from the server's thread."""

    def __init__(self, stall_limit: float = STALL_LIMIT) -> None:
        self.failure: str | None = None
        self.ready = False
        self.stall_limit = stall_limit
        self._beat = time.monotonic()

    def beat(self) -> None:
        self._beat = time.monotonic()

    def fail(self, reason: str) -> None:
        """Record the first fatal problem; liveness fails from now on."""
        if self.failure is None:
            self.failure = reason

    def liveness_problem(self) -> str | None:
        if self.failure is not None:
            return self.failure
        silent = time.monotonic() - self._beat
        if silent > self.stall_limit:
            return f"the event loop has not run for {silent:.0f}s"
        return None

    def readiness_problem(self) -> str | None:
        return None if self.ready else "starting"

    def serve_on(self, server: HealthServer) -> HealthServer:
        """/livez and /healthz fail on a liveness problem; /readyz also until the controller is ready (a
        standby is ready: it can take over)."""
        server.add_check("controller", self.liveness_problem, liveness=True)
        server.add_check("started", self.readiness_problem)
        return server


class Supervisor:
    """The controller's tasks: spawned, watched, and cancelled together."""

    def __init__(self, health: Health, on_failure: Callable[[], None]) -> None:
        self.health = health
        self.tasks: list[asyncio.Task[Any]] = []
        self._on_failure = on_failure
        self._stopping = False

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        task.add_done_callback(self._task_ended)
        self.tasks.append(task)

    def start_heartbeat(self) -> None:
        self.spawn(self._heartbeat(), "heartbeat")

    async def stop(self) -> None:
        self._stopping = True
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        why = "cancelled" if task.cancelled() else repr(error) if error is not None else "returned"
        log.error("event=task_died task=%s error=%s action=stopping", task.get_name(), why, exc_info=error)
        self.health.fail(f"task {task.get_name()} died: {why}")
        self._on_failure()

    async def _heartbeat(self) -> None:
        while True:
            self.health.beat()
            await asyncio.sleep(HEARTBEAT)
