"""End-to-end controller latency: Service create -> EXTERNAL-IP, embedded API server and the real operator.

Two measurements, both against a fresh `lab.apiserver` and `python -m controller --standalone`:

* one Service at a time (`--single N` rounds): t0 just before the create request, t1 when a running
  `kubectl get svc -w` prints the Service's row with its EXTERNAL-IP (what a user sees);
* `--burst M` Services created at once (32 requests in flight): t0 per Service just before its create request,
  t1 when a watch on the Services (opened before the burst) first shows status.loadBalancer.ingress for it.
  kubectl is not in that loop: spawning thousands of kubectl processes would measure kubectl, not us.

Usage: python -m bench.controller_bench [--single 100] [--burst 5000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.controller_lab import CONTROLLER_TREE, AsyncClient, controller_env, peak_rss_mb
from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
POOLS = """address-pools:
- name: bench
  protocol: layer2
  addresses:
  - 10.200.0.0/16
"""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "count": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 1),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "mean_ms": round(statistics.fmean(samples) * 1000, 1),
    }


def service_body(name: str, namespace: str) -> dict[str, Any]:
    # No nodePorts: 5,000 LoadBalancer Services would exhaust 30000-32767 (in a real cluster too).
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"port": 80, "protocol": "TCP"}],
            "allocateLoadBalancerNodePorts": False,
        },
    }


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


async def single_rounds(client: AsyncClient, kubeconfig: Path, rounds: int) -> list[float]:
    namespace = "bench-single"
    kubectl(kubeconfig, "create", "namespace", namespace)
    watcher = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "svc",
        "-n",
        namespace,
        "-w",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert watcher.stdout is not None
    samples = []
    try:
        await asyncio.sleep(1.0)  # let kubectl open its watch
        for index in range(rounds):
            name = f"single-{index}"
            started = time.monotonic()
            await client.create(f"/api/v1/namespaces/{namespace}/services", service_body(name, namespace))
            while True:
                line = (await asyncio.wait_for(watcher.stdout.readline(), 30)).decode()
                fields = line.split()
                shown = len(fields) > 3 and fields[3] not in ("<pending>", "<none>")
                if fields and fields[0] == name and shown:
                    samples.append(time.monotonic() - started)
                    break
    finally:
        watcher.kill()
        await watcher.wait()
    return samples


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(client: AsyncClient, kubeconfig: Path, count: int) -> tuple[list[float], float, float, int]:
    namespace = "bench-burst"
    kubectl(kubeconfig, "create", "namespace", namespace)
    path = f"/api/v1/namespaces/{namespace}/services"
    listing = await client.list(path)
    started: dict[str, float] = {}
    seen: dict[str, float] = {}
    ips: dict[str, str] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for event in client.watch(path, listing["metadata"]["resourceVersion"]):
            obj = event.get("object") or {}
            name = (obj.get("metadata") or {}).get("name")
            ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if name and ingress and name not in seen:
                seen[name] = time.monotonic()
                ips[name] = ingress[0]["ip"]
                if len(seen) == count:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)
    semaphore = asyncio.Semaphore(32)

    async def create(index: int) -> None:
        name = f"burst-{index}"
        async with semaphore:
            started[name] = time.monotonic()
            await client.create(path, service_body(name, namespace))

    began = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(count)))
    created = time.monotonic() - began
    await asyncio.wait_for(done.wait(), 600)
    wall = max(seen.values()) - began
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return [seen[name] - started[name] for name in started], wall, created, len(set(ips.values()))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ilb-bench-") as directory:
        data = Path(directory)
        server = ApiServerProcess(data_dir=data / "apiserver")
        server.start()
        controller: subprocess.Popen[bytes] | None = None
        client = AsyncClient(server.kubeconfig, connections=64)
        try:
            kubeconfig = server.kubeconfig
            for manifest in ("namespace.yaml", "crd"):
                kubectl(kubeconfig, "apply", "-f", str(REPO / "config" / manifest))
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": "metallb-system"},
                "data": {"config": POOLS},
            }
            kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(configmap))
            log = (data / "controller.log").open("wb")
            controller = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--standalone",
                    "--metrics-port",
                    "0",
                    "--log-level",
                    "warning",
                    "--workers",
                    str(args.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=CONTROLLER_TREE,
                env=controller_env(),
            )
            await asyncio.sleep(3)  # controller start-up: lists and restore
            results: dict[str, Any] = {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}",
                "python": platform.python_version(),
            }
            if args.single:
                results["single"] = summary(await single_rounds(client, kubeconfig, args.single))
            if args.burst:
                cpu_before = cpu_seconds(controller.pid), cpu_seconds(server.pid)
                samples, wall, created, unique = await burst(client, kubeconfig, args.burst)
                results["burst"] = {
                    **summary(samples),
                    "wall_s": round(wall, 2),
                    "creates_done_s": round(created, 2),
                    "unique_ips": unique,
                    "controller_cpu_s": round(cpu_seconds(controller.pid) - cpu_before[0], 1),
                    "apiserver_cpu_s": round(cpu_seconds(server.pid) - cpu_before[1], 1),
                    "controller_peak_rss_mb": round(peak_rss_mb(controller.pid), 1),
                }
            return results
        finally:
            await client.close()
            if controller is not None:
                controller.terminate()
                try:
                    controller.wait(30)
                except subprocess.TimeoutExpired:  # a loaded machine: the results still count
                    controller.kill()
                    controller.wait()
            server.stop()
            server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=100, help="rounds of one Service at a time")
    parser.add_argument("--burst", type=int, default=5000, help="Services created at once")
    parser.add_argument("--workers", type=int, default=16, help="the controller's --workers")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"machine: {results['machine']}, Python {results['python']}")
    for key in ("single", "burst"):
        if key in results:
            print(f"{key}: {json.dumps(results[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
