"""How much work IP releases cause while many Services wait for an IP (issue 8's re-reconcile storm).

Against a fresh in-memory `lab.apiserver` and `python -m controller --standalone`: a pool of `--pool` IPs,
as many Services holding them, then `--pending` more Services that cannot get one (they wait, pending).
Then the holders are deleted one at a time; after each, the controller must give the freed IP to the
oldest waiting Service. Reported: the controller's log lines and reconciliations caused by the releases
(the old controller retried every pending Service on every release: 1,000 x 10 = 10,000 reconciliations),
and the time until every freed IP had a new holder.

Usage: python -m bench.controller_pending_bench [--pool 10] [--pending 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench.controller_lab import AsyncClient, lab, logged, machine, report, wait_for


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "selector": {"app": name},
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }


async def create_all(client: AsyncClient, names: list[str], in_flight: int = 16) -> None:
    queue = iter(names)

    async def creator() -> None:
        for name in queue:
            await client.create("/api/v1/namespaces/default/services", service(name))

    await asyncio.gather(*(creator() for _ in range(in_flight)))


def count(log_file: Path, marker: str) -> int:
    return log_file.read_text().count(marker)


async def quiet(log_file: Path, seconds: float = 2.0) -> None:
    """Until the log has not grown for `seconds` (the last retries have run)."""
    size = -1
    while size != log_file.stat().st_size:
        size = log_file.stat().st_size
        await asyncio.sleep(seconds)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    last = 10 + args.pool - 1
    pools = f"address-pools:\n- {{name: p, protocol: layer2, addresses: [10.210.0.10-10.210.0.{last}]}}\n"
    async with lab(pools, prefix="ironlb-pendingbench-") as running:
        client = running.client
        _, log_file = await running.start_controller("controller")
        await create_all(client, [f"holder-{i:03d}" for i in range(args.pool)])
        await wait_for("holders assigned", logged(log_file, "event=assigned ", args.pool), 120)
        await create_all(client, [f"waiter-{i:04d}" for i in range(args.pending)])
        await wait_for("waiters pending", logged(log_file, "event=allocation_failed ", args.pending), 300)
        await quiet(log_file)
        lines_before = len(log_file.read_text().splitlines())
        failed_before = count(log_file, "event=allocation_failed ")

        t0 = time.monotonic()
        for i in range(args.pool):
            await client.request("DELETE", f"/api/v1/namespaces/default/services/holder-{i:03d}")
            await wait_for("the freed IP taken", logged(log_file, "event=assigned ", args.pool + i + 1), 120)
        refilled_s = time.monotonic() - t0
        await quiet(log_file)
        lines = log_file.read_text().splitlines()[lines_before:]
        return {
            "pool": args.pool,
            "pending": args.pending,
            "releases": args.pool,
            "log_lines_after_releases": len(lines),
            "retries_failed_again": count(log_file, "event=allocation_failed ") - failed_before,
            "freed_ips_reassigned": sum("event=assigned " in line for line in lines),
            "all_refilled_s": round(refilled_s, 2),
            "machine": machine(),
        }


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
