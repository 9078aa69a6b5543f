"""A tenant's large annotations must not grow the controller (issue 8: 800 Services with 250 KB annotations
made an OOM crash loop). The controller caches a projection of each Service and lists them in pages, so its
peak memory does not follow the annotations: checked while they arrive (the watch) and on a restart over
them (the list). The full-size measurement is bench/controller_memory_bench.py."""

from __future__ import annotations

import asyncio

import pytest

from bench.controller_lab import AsyncClient, peak_rss_mb
from bench.controller_memory_bench import create_flood
from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import apply, configmap, wait_for

pytestmark = pytest.mark.timeout(180)

FLOOD = 400
ANNOTATION_BYTES = 64 * 1024  # 25 MiB of annotations in all
# The controller grows by ~10-25 MB of transient buffers here (its 300 s re-list runs every second in these
# tests); the old one, which cached whole Services, grew by 160 MB during the flood and 76 MB on restart.
GROWTH_LIMIT_MB = 45.0


def _flood(cluster: Cluster) -> None:
    async def create() -> None:
        client = AsyncClient(cluster.server.kubeconfig, connections=16)
        try:
            await create_flood(client, FLOOD, ANNOTATION_BYTES)
        finally:
            await client.close()

    asyncio.run(create())


def test_large_annotations_do_not_grow_the_controller(
    cluster: Cluster, start_controller: StartController
) -> None:
    pools = "address-pools:\n- {name: p, protocol: layer2, addresses: [10.70.0.0/22]}"
    apply(cluster.kubectl, configmap(pools))
    controller = start_controller("--standalone")
    assert controller.proc is not None
    idle = peak_rss_mb(controller.proc.pid)

    _flood(cluster)
    wait_for(
        "every flooded Service assigned",
        lambda: controller.log().count("event=assigned ") >= FLOOD,
        timeout=120,
        interval=0.5,
    )
    during = peak_rss_mb(controller.proc.pid)
    controller.kill()

    restarted = start_controller("--standalone")  # lists all of them at start-up
    assert restarted.proc is not None
    after_restart = peak_rss_mb(restarted.proc.pid)
    numbers = f"idle peak {idle:.0f} MB, during the flood {during:.0f} MB, restart {after_restart:.0f} MB"
    assert during - idle <= GROWTH_LIMIT_MB, numbers
    assert after_restart - idle <= GROWTH_LIMIT_MB, numbers
    assert "event=restored adopted=400 refused=0" in restarted.log(), restarted.log()[-2000:]
