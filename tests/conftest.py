"""Shared fixtures: a real embedded API server per test and a kubectl bound to it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session", autouse=True)
def children_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """TMPDIR for every process the tests start.

    The kubernetes client copies kubeconfig credentials into temp files, and a process killed on purpose (the
    restart and failover tests) never removes them; inside pytest's temp tree they go with it.
    """
    path = tmp_path_factory.mktemp("children-tmp")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


@pytest.fixture
def apiserver(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ApiServerProcess]:
    """A started API server with its data dir under tmp_path; stopped (SIGTERM) afterwards. When the test
    fails, the tail of the server's log is printed with the failure."""
    server = ApiServerProcess(data_dir=tmp_path / "apiserver")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()
        log = server.log_file
        if request.node.stash.get(CALL_FAILED, False) and log is not None and log.exists():
            print(f"--- {log} (tail) ---\n{log.read_text()[-4000:]}")


def make_kubectl(kubeconfig: Path) -> Kubectl:
    def kubectl(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        binary = str(KUBECTL) if KUBECTL.exists() else "kubectl"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        result = subprocess.run(
            [binary, "--kubeconfig", str(kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    return kubectl


@pytest.fixture
def kubectl(apiserver: ApiServerProcess) -> Kubectl:
    """kubectl(*args, input=None, check=True) -> CompletedProcess[str], bound to the `apiserver` fixture."""
    return make_kubectl(apiserver.kubeconfig)
