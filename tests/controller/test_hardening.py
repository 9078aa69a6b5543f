"""The controller process itself: no credentials on disk, supervised tasks, real health endpoints."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.operator import Controller, Options
from controller.supervision import STALL_LIMIT
from k8s.client import load_configuration
from k8s.serving import HealthServer
from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import wait_for

pytestmark = pytest.mark.timeout(120)


def test_inline_kubeconfig_credentials_never_reach_the_disk(
    start_controller: StartController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's kubeconfig carries its client key inline; nothing of it may be left in TMPDIR, neither while
    the controller runs nor after a SIGKILL (which runs no cleanup)."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    controller = start_controller("--standalone")
    assert list(private_tmp.iterdir()) == []
    controller.kill()
    assert list(private_tmp.iterdir()) == []


class InProcessController:
    """The real operator (kopf, our tasks, the health server) in a thread of this process, so that a test
    can reach its tasks: the only way to kill one task of a running controller without changing its code."""

    def __init__(self, kubeconfig: Path, stall_limit: float = STALL_LIMIT) -> None:
        options = Options(leader_elect=False, resync_period=0, workers=2)
        self.controller = Controller(options, load_configuration(str(kubeconfig)))
        self.controller.health.stall_limit = stall_limit
        self.server = self.controller.health.serve_on(HealthServer("127.0.0.1", 0)).start()
        self.port = self.server.port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.exit_status: int | None = None
        self.thread = threading.Thread(target=self._run, name="controller-under-test", daemon=True)

    def _run(self) -> None:
        async def main() -> int:
            self.loop = asyncio.get_running_loop()
            return await self.controller.run()

        self.exit_status = asyncio.run(main())

    def probe(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def failing(self, path: str) -> tuple[int, str, str | None] | None:
        """The probe's answer once it is not 200, with the reason the controller gives (the server withholds
        it, as the kube-apiserver does), for wait_for."""
        status, body = self.probe(path)
        return None if status == 200 else (status, body, self.controller.health.liveness_problem())

    def task(self, name: str) -> asyncio.Task[object]:
        return next(task for task in self.controller.supervisor.tasks if task.get_name() == name)

    def stop(self) -> None:
        if self.thread.is_alive() and self.loop is not None and self.controller.stop_flag is not None:
            self.loop.call_soon_threadsafe(self.controller.stop_flag.set)
        self.thread.join(30)
        self.server.stop()


@pytest.fixture
def in_process(cluster: Cluster) -> Iterator[Callable[..., InProcessController]]:
    started: list[InProcessController] = []

    def start(stall_limit: float = STALL_LIMIT) -> InProcessController:
        runner = InProcessController(cluster.server.kubeconfig, stall_limit)
        started.append(runner)
        runner.thread.start()
        wait_for("/readyz answering 200", lambda: runner.probe("/readyz")[0] == 200, timeout=30)
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.stop()


def test_a_dead_task_fails_liveness_and_stops_the_controller(
    in_process: Callable[..., InProcessController],
) -> None:
    """Before: a dead config task left a process whose only probe (GET /metrics) still passed."""
    runner = in_process()
    assert runner.probe("/healthz") == (200, "ok")
    assert runner.probe("/metrics")[0] == 200
    assert runner.loop is not None
    runner.loop.call_soon_threadsafe(runner.task("config").cancel)
    status, body, reason = wait_for("/healthz failing", lambda: runner.failing("/healthz"))
    assert (status, reason) == (500, "task config died: cancelled")
    assert "[-]controller failed" in body
    assert runner.probe("/readyz")[0] == 500
    runner.thread.join(30)  # the operator stops on its own (the Lease would be released) ...
    assert not runner.thread.is_alive() and runner.exit_status == 1  # ... and `python -m controller` exits 1


def test_a_stuck_event_loop_fails_liveness(in_process: Callable[..., InProcessController]) -> None:
    runner = in_process(stall_limit=1.0)
    assert runner.loop is not None
    runner.loop.call_soon_threadsafe(time.sleep, 4)  # a handler that never yields
    status, body, reason = wait_for("/healthz failing", lambda: runner.failing("/healthz"))
    assert status == 500 and "[-]controller failed" in body, body
    assert reason is not None and reason.startswith("the event loop has not run for"), reason
    wait_for("/healthz recovering", lambda: runner.probe("/healthz")[0] == 200, timeout=10)
