"""The controller's peak memory under a flood of Services carrying large annotations (issue 8).

Against a fresh in-memory `lab.apiserver`: starts `python -m controller --standalone`, reads its peak RSS
(VmHWM) once started with no Services (the baseline of this run), then creates `--services` LoadBalancer
Services, each with one `--annotation-kib` KiB annotation a tenant could add (not one the controller reads),
waits until every one has its external IP, and reads the peak again (the watch path). Then it kills the
controller and starts a new one over the same Services (the list path at start-up, where the old controller
peaked highest), waits until it has restored them all and reads that process's peak.

Usage: python -m bench.controller_memory_bench [--services 10000] [--annotation-kib 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from bench.controller_lab import (
    AsyncClient,
    cpu_seconds,
    lab,
    logged,
    machine,
    peak_rss_mb,
    report,
    wait_for,
)

POOLS = "address-pools:\n- {name: bench, protocol: layer2, addresses: [10.200.0.0/16]}\n"


def flood_service(index: int, namespace: str, annotation_bytes: int) -> dict[str, Any]:
    """A LoadBalancer Service whose bulk is one annotation the controller ignores (unique per Service, so
    that nothing can share the string)."""
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
    client: AsyncClient, count: int, annotation_bytes: int, namespace: str = "default", in_flight: int = 16
) -> None:
    indexes = iter(range(count))

    async def creator() -> None:
        for index in indexes:
            body = flood_service(index, namespace, annotation_bytes)
            await client.create(f"/api/v1/namespaces/{namespace}/services", body)

    await asyncio.gather(*(creator() for _ in range(in_flight)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # A short watch history: the lab server keeps each event's object and its encoding, and its default of
    # 10,000 events of 64 KiB objects would cost it gigabytes (a real server's watch cache is also bounded).
    async with lab(POOLS, ["--history-size", str(args.history)], "ironlb-membench-") as running:
        first, first_log = await running.start_controller("controller-1")
        idle = peak_rss_mb(first.pid)

        t0 = time.monotonic()
        await create_flood(running.client, args.services, args.annotation_kib * 1024)
        created_s = time.monotonic() - t0
        # Counted in the controller's log: listing 10,000 Services of 64 KiB to check would load the server.
        assigned = logged(first_log, "event=assigned ", args.services)
        await wait_for("every Service assigned", assigned, args.timeout)
        served_s = time.monotonic() - t0
        watch_peak = peak_rss_mb(first.pid)
        flood_cpu = cpu_seconds(first.pid)
        server_cpu = cpu_seconds(running.server.pid)
        first.send_signal(signal.SIGKILL)
        first.wait()

        t1 = time.monotonic()
        second, _ = await running.start_controller("controller-2", timeout=args.timeout)
        return {
            "services": args.services,
            "annotation_kib": args.annotation_kib,
            "flood_mb": round(args.services * args.annotation_kib / 1024, 1),
            "controller_idle_peak_mb": round(idle, 1),
            "controller_peak_during_flood_mb": round(watch_peak, 1),
            "controller_peak_restart_over_flood_mb": round(peak_rss_mb(second.pid), 1),
            "flood_created_s": round(created_s, 1),
            "all_assigned_s": round(served_s, 1),
            "restart_to_started_s": round(time.monotonic() - t1, 1),
            "controller_cpu_during_flood_s": round(flood_cpu, 1),
            "apiserver_cpu_until_all_assigned_s": round(server_cpu, 1),
            "apiserver_peak_mb": round(peak_rss_mb(running.server.pid), 1),
            "machine": machine(),
        }


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--annotation-kib", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--history", type=int, default=1000, help="the lab API server's --history-size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
