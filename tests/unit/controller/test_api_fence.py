"""Every write of the controller waits for the leader's fence (issue 7, case 4).

The deterministic half of tests/controller/test_fencing.py: there a leader paused past its lease only
sometimes has a write ready before it notices the lost Lease (the controller before fencing passed that
test in 4 of 5 runs here), so this checks the gate itself. Status and pool-status writes go through
Api.write; Events through the recorder's may_post=Api.fence (tests/k8s/test_events.py).
"""

from __future__ import annotations

import asyncio
import threading
from typing import cast

from controller.api import FENCE_POLL, Api
from k8s.client import Client

NO_CLIENT = cast(Client, None)  # the calls below are plain functions: no request is made


async def test_a_write_waits_until_the_fence_opens() -> None:
    fence = threading.Event()
    api = Api(NO_CLIENT, may_write=fence.is_set)
    written: list[str] = []
    write = asyncio.create_task(api.write(written.append, "status"))
    await asyncio.sleep(6 * FENCE_POLL)  # several looks at the closed fence
    assert written == [] and not write.done()
    fence.set()
    await asyncio.wait_for(write, 10)
    assert written == ["status"]


async def test_reads_never_wait_and_without_election_writes_go_at_once() -> None:
    closed = Api(NO_CLIENT, may_write=lambda: False)
    assert await asyncio.wait_for(closed.read(lambda: "read"), 10) == "read"
    assert not closed.fence()
    standalone = Api(NO_CLIENT)
    assert standalone.fence()
    assert await asyncio.wait_for(standalone.write(lambda: "written"), 10) == "written"
