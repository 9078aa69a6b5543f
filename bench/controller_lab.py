"""What the controller benchmarks share: a fresh in-memory lab API server with config/ and a MetalLB ConfigMap
applied, `python -m controller --standalone` processes logging to files, waits on their logs, and the
process's CPU and peak memory from /proc."""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.kube import KubeClient, load_client_configuration
from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


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
    client: KubeClient
    workdir: Path
    controllers: list[subprocess.Popen[bytes]]

    async def start_controller(self, name: str, timeout: float = 60) -> tuple[subprocess.Popen[bytes], Path]:
        """A controller (info logs in WORKDIR/name.log), once it has logged event=started."""
        log_file = self.workdir / f"{name}.log"
        command = [
            sys.executable, "-m", "controller", "--kubeconfig", str(self.server.kubeconfig), "--standalone",
            "--metrics-port", "0", "--log-level", "info",
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with log_file.open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
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
    client: KubeClient | None = None
    controllers: list[subprocess.Popen[bytes]] = []
    try:
        for manifest in ("namespace.yaml", "crd"):
            path = REPO / "config" / manifest
            kubectl = [str(KUBECTL), "--kubeconfig", str(server.kubeconfig), "apply", "-f", str(path)]
            subprocess.run(kubectl, check=True, capture_output=True)
        client = KubeClient(load_client_configuration(str(server.kubeconfig)), connections=32)
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
