"""What the controller benchmarks share: a fresh in-memory lab API server with config/ and a MetalLB ConfigMap
applied, `python -m controller --standalone` processes logging to files, waits on their logs, the process's
CPU and peak memory from /proc, and an asyncio face of the shared client for the load generators.

IRONLB_BENCH_CONTROLLER_TREE=<a checkout> runs the controller of that checkout instead of this one (the load
generators stay this tree's): an A/B comparison in one run, as docs/benchmarks.md records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s.client import Client, load_configuration
from k8s.meta import JSON
from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
# The tree whose controller runs (default: this one).
CONTROLLER_TREE = Path(os.environ.get("IRONLB_BENCH_CONTROLLER_TREE") or REPO)


def controller_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(CONTROLLER_TREE))


class AsyncClient:
    """k8s.client.Client for asyncio load generators: each request in a thread of a pool as large as the
    requests a generator keeps in flight."""

    def __init__(self, kubeconfig: Path, connections: int = 32) -> None:
        configuration = load_configuration(str(kubeconfig))
        configuration.connection_pool_maxsize = connections
        self.client = Client(configuration)
        self._threads = ThreadPoolExecutor(connections + 2, thread_name_prefix="bench-client")

    async def _call(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, lambda: call(*args, **kwargs))

    async def create(self, path: str, body: JSON) -> JSON:
        answer: JSON = await self._call(self.client.create, path, body)
        return answer

    async def list(self, path: str) -> JSON:
        answer: JSON = await self._call(self.client.get, path)
        return answer

    async def request(self, method: str, path: str) -> JSON:
        answer: JSON = await self._call(self.client.request, method, path)
        return answer

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[JSON]:
        """Watch events until the server ends the stream (the watch runs in a thread of its own)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[JSON | None] = asyncio.Queue()
        watch = self.client.watch(path, resource_version)

        def pump() -> None:
            try:
                for event in watch:
                    loop.call_soon_threadsafe(events.put_nowait, event)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, None)

        thread = loop.run_in_executor(None, pump)
        try:
            while (event := await events.get()) is not None:
                yield event
        finally:
            watch.close()
            with contextlib.suppress(Exception):
                await thread

    async def close(self) -> None:
        self.client.close()
        self._threads.shutdown(wait=False)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set size the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def machine() -> str:
    return f"nproc={os.cpu_count()} {platform.machine()} Python {platform.python_version()}"


async def wait_for(what: str, probe: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def logged(log_file: Path, marker: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    """A probe: `marker` appears at least `count` times in the log."""

    async def probe() -> bool:
        return log_file.read_text().count(marker) >= count

    return probe


@dataclass
class Lab:
    server: ApiServerProcess
    client: AsyncClient
    workdir: Path
    controllers: list[subprocess.Popen[bytes]]

    async def start_controller(self, name: str, timeout: float = 60) -> tuple[subprocess.Popen[bytes], Path]:
        """A controller (info logs in WORKDIR/name.log), once it has logged event=started."""
        log_file = self.workdir / f"{name}.log"
        command = [
            sys.executable, "-m", "controller", "--kubeconfig", str(self.server.kubeconfig), "--standalone",
            "--metrics-port", "0", "--log-level", "info",
        ]  # fmt: skip
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=controller_env(), cwd=CONTROLLER_TREE
            )
        self.controllers.append(proc)

        async def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"controller exited {proc.returncode}: {log_file.read_text()[-2000:]}")
            return "event=started" in log_file.read_text()

        await wait_for("controller start", started, timeout)
        return proc, log_file


@contextlib.asynccontextmanager
async def lab(
    pools: str, server_args: Sequence[str] = (), prefix: str = "ironlb-bench-"
) -> AsyncIterator[Lab]:
    """A fresh API server with config/'s namespace and CRDs and a ConfigMap of `pools`; everything it started
    is stopped and its directory removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    log_file = workdir / "apiserver.log"
    server = ApiServerProcess(log_file=log_file, extra_args=list(server_args), start_timeout=30)
    server.start()
    client: AsyncClient | None = None
    controllers: list[subprocess.Popen[bytes]] = []
    try:
        for manifest in ("namespace.yaml", "crd"):
            path = REPO / "config" / manifest
            kubectl = [str(KUBECTL), "--kubeconfig", str(server.kubeconfig), "apply", "-f", str(path)]
            subprocess.run(kubectl, check=True, capture_output=True)
        client = AsyncClient(server.kubeconfig, connections=32)
        configmap = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "metallb-system"}, "data": {"config": pools},
        }  # fmt: skip
        await client.create("/api/v1/namespaces/metallb-system/configmaps", configmap)
        yield Lab(server, client, workdir, controllers)
    finally:
        for proc in controllers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if client is not None:
            await client.close()
        server.stop()
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:40} {value}")
