"""Leadership for the controller's event loop: k8s.leader.LeaderElector (a coordination.k8s.io Lease,
client-go's rules, write fencing), its blocking calls run in threads.

Only the leader assigns IPs. A standby polls every retry period without jitter (the quickest takeover: a
crashed leader's Services are served again within ~3.5 s). The leader renews from a thread of its own; when it
cannot renew before the renew deadline, `on_lost` runs (the process exits: another replica may take over any
moment). On a clean stop the Lease is handed back, so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from k8s.client import Client
from k8s.leader import LeaderElector


class Leadership:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
    ) -> None:
        self.elector = LeaderElector(
            client,
            namespace,
            name,
            identity,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            jitter=0.0,
        )
        self._stop = threading.Event()
        self._renewing: asyncio.Future[bool] | None = None

    def may_write(self) -> bool:
        return self.elector.may_write()

    async def acquire(self) -> None:
        """Return once this replica holds the Lease (a cancelled wait stops the standby's thread too)."""
        try:
            acquired = await asyncio.to_thread(self.elector.acquire, self._stop)
        except asyncio.CancelledError:
            self._stop.set()
            raise
        if not acquired:
            raise asyncio.CancelledError("stopped while standing by")

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew until the Lease is lost (then `on_lost`) or `stop` is called (then return)."""
        self._renewing = asyncio.get_running_loop().run_in_executor(None, self.elector.renew, self._stop)
        # Shielded: cancelling this task must not forget the renewing thread, which `stop` waits for.
        if not await asyncio.shield(self._renewing):
            on_lost()

    async def stop(self) -> None:
        """Stop renewing (waiting for a renewal in flight, which would conflict with the release), then hand
        the Lease back."""
        self._stop.set()
        if self._renewing is not None:
            with contextlib.suppress(Exception):
                await self._renewing
        await asyncio.to_thread(self.elector.release)
