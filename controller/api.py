"""The controller's calls to the shared client (k8s.client.Client) from its event loop.

The client is synchronous: each call runs in a worker thread of the loop's default executor, so the loop
keeps serving while requests are in flight (as many at once as there are reconcile workers). A write first
waits for the leader's fence, in that thread, right before its request: a leader past its renew deadline,
such as one resumed after a pause, writes nothing until it has renewed, or exits when it cannot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from k8s.client import Client

P = ParamSpec("P")
T = TypeVar("T")

FENCE_POLL = 0.05  # seconds between looks at the fence while it is closed


class Api:
    def __init__(self, client: Client, may_write: Callable[[], bool] | None = None) -> None:
        self.client = client
        self.may_write = may_write  # None: no leader election, every write may go

    async def read(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(call, *args, **kwargs)

    async def write(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def fenced() -> T:
            while not self.fence():
                time.sleep(FENCE_POLL)
            return call(*args, **kwargs)

        return await asyncio.to_thread(fenced)

    def fence(self) -> bool:
        return self.may_write is None or self.may_write()
