"""The controller's peak memory under a flood of Services carrying large annotations (issue 8).

Against a fresh in-memory `lab.apiserver`: starts `python -m controller --standalone`, reads its peak RSS
(VmHWM) once started with no Services (the baseline of this run), then creates `--services` LoadBalancer
Services, each with one `--annotation-kib` KiB annotation a tenant could add (not one the controller reads),
waits until every one shows its external IP, and reads the peak again (the watch path). Then it kills the
controller and starts a new one over the same Services (the list path at start-up, where the old controller
peaked highest), waits until it has restored them all and reads that process's peak.

Usage: python -m bench.controller_memory_bench [--services 10000] [--annotation-kib 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.kube import KubeClient, load_client_configuration
from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
POOLS = """address-pools:
- name: bench
  protocol: layer2
  addresses:
  - 10.200.0.0/16
"""


def flood_service(index: int, namespace: str, annotation_bytes: int) -> dict[str, Any]:
    """A LoadBalancer Service whose bulk is one annotation of ours-to-ignore (unique per Service, so that
    nothing can share the string)."""
    filler = f"{index:08d}" + "x" * max(0, annotation_bytes - 8)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"flood-{index:05d}",
            "namespace": namespace,
            "annotations": {"tenant.example/blob": filler},
        },
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "selector": {"app": "flood"},
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }


async def create_flood(
    client: KubeClient, count: int, annotation_bytes: int, namespace: str = "default", in_flight: int = 16
) -> None:
    indexes = iter(range(count))

    async def creator() -> None:
        for index in indexes:
            body = flood_service(index, namespace, annotation_bytes)
            await client.create(f"/api/v1/namespaces/{namespace}/services", body)

    await asyncio.gather(*(creator() for _ in range(in_flight)))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set size the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def start_controller(kubeconfig: Path, log_file: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "controller", "--kubeconfig", str(kubeconfig), "--standalone",
        "--metrics-port", "0", "--log-level", "info",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with log_file.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


async def wait_for(what: str, probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def wait_started(proc: subprocess.Popen[bytes], log_file: Path, timeout: float) -> None:
    async def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited {proc.returncode}: {log_file.read_text()[-2000:]}")
        return "event=started" in log_file.read_text()

    await wait_for("controller start", started, timeout)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ironlb-membench-"))
    # A short watch history: the lab server keeps each event's object and its encoding, and its default of
    # 10,000 events of 64 KiB objects would cost it gigabytes (a real server's watch cache is also bounded).
    server = ApiServerProcess(
        log_file=workdir / "apiserver.log", extra_args=["--history-size", str(args.history)], start_timeout=30
    ).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        kubeconfig = server.kubeconfig
        for manifest in ("namespace.yaml", "crd"):
            path = REPO / "config" / manifest
            kubectl = [str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", str(path)]
            subprocess.run(kubectl, check=True, capture_output=True)
        configmap = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "metallb-system"}, "data": {"config": POOLS},
        }  # fmt: skip
        client = KubeClient(load_client_configuration(str(kubeconfig)), connections=32)
        await client.create("/api/v1/namespaces/metallb-system/configmaps", configmap)

        first = start_controller(kubeconfig, workdir / "controller-1.log")
        procs.append(first)
        await wait_started(first, workdir / "controller-1.log", 60)
        idle = peak_rss_mb(first.pid)

        t0 = time.monotonic()
        await create_flood(client, args.services, args.annotation_kib * 1024)
        created_s = time.monotonic() - t0
        # Counted in the controller's log: listing 10,000 Services of 64 KiB to check would load the server.
        await wait_for(
            "every Service assigned",
            lambda: _logged(workdir / "controller-1.log", "event=assigned ", args.services),
            timeout=args.timeout,
        )
        served_s = time.monotonic() - t0
        watch_peak = peak_rss_mb(first.pid)
        flood_cpu = cpu_seconds(first.pid)
        server_cpu = cpu_seconds(server.pid)
        first.send_signal(signal.SIGKILL)
        first.wait()

        second = start_controller(kubeconfig, workdir / "controller-2.log")
        procs.append(second)
        t1 = time.monotonic()
        await wait_started(second, workdir / "controller-2.log", args.timeout)
        restart_s = time.monotonic() - t1
        restart_peak = peak_rss_mb(second.pid)
        server_peak = peak_rss_mb(server.pid)
        await client.close()
        return {
            "services": args.services,
            "annotation_kib": args.annotation_kib,
            "flood_mb": round(args.services * args.annotation_kib / 1024, 1),
            "controller_idle_peak_mb": round(idle, 1),
            "controller_peak_during_flood_mb": round(watch_peak, 1),
            "controller_peak_restart_over_flood_mb": round(restart_peak, 1),
            "flood_created_s": round(created_s, 1),
            "all_assigned_s": round(served_s, 1),
            "restart_to_started_s": round(restart_s, 1),
            "controller_cpu_during_flood_s": round(flood_cpu, 1),
            "apiserver_cpu_until_all_assigned_s": round(server_cpu, 1),
            "apiserver_peak_mb": round(server_peak, 1),
            "machine": f"nproc={os.cpu_count()} {platform.machine()} Python {platform.python_version()}",
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


async def _logged(log_file: Path, marker: str, count: int) -> bool:
    return log_file.read_text().count(marker) >= count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--annotation-kib", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--history", type=int, default=1000, help="the lab API server's --history-size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
