"""Leader election on a coordination.k8s.io/v1 Lease, so that only one controller replica assigns IPs.

Follows client-go's rules: a lease is free when it has no holder or when its record has not changed for
leaseDurationSeconds of *our* clock (observed locally, so clock skew between replicas does not matter); the
leader renews every retry period and gives up (the process exits) if it could not renew for renew_deadline,
which is shorter than the lease duration, so it stops before anyone else may take over.

Fencing: the process may be paused (SIGSTOP, a VM freeze, a long GC) past its lease and resume with writes
queued. `may_write()` is false once renew_deadline has passed since the start of the last successful renewal
(monotonic clock): callers check it right before each write, so a leader that lost the Lease while paused
writes nothing before `keep()` notices and gives up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from controller.kube import ApiError, KubeClient, micro_time

log = logging.getLogger("controller.leader")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: int,
        renew_deadline: float,
        retry_period: float,
    ) -> None:
        self._client = client
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._namespace = namespace
        self._ref = f"{namespace}/{name}"
        self._name = name
        self.identity = identity
        self._duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry = retry_period
        self._observed: tuple[Any, Any] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0  # monotonic time at which the last successful renewal was sent
        self._lease: dict[str, Any] | None = None  # our Lease as last written, for renewals without a read
        self.is_leader = False

    def may_write(self) -> bool:
        """Whether this replica is the leader and its renew deadline has not passed (others cannot have taken
        over yet: they wait a whole lease duration from when they saw our last renewal)."""
        return self.is_leader and time.monotonic() - self._last_renew < self._renew_deadline

    async def acquire(self) -> None:
        """Return once this replica holds the lease."""
        logged = False
        while not await self._try_acquire_or_renew():
            if not logged:
                log.info("event=leader_waiting lease=%s identity=%s", self._ref, self.identity)
                logged = True
            await asyncio.sleep(self._retry)
        self.is_leader = True
        log.info("event=leader_acquired lease=%s identity=%s", self._ref, self.identity)

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew until renewals fail for longer than the renew deadline, then call `on_lost`."""
        while True:
            await asyncio.sleep(self._retry)
            if await self._try_acquire_or_renew():
                continue
            if time.monotonic() - self._last_renew > self._renew_deadline:
                self.is_leader = False
                log.error("event=leader_lost lease=%s identity=%s", self._ref, self.identity)
                on_lost()
                return

    async def release(self) -> None:
        """Hand the lease back so that a standby replica takes over at once (clean shutdown)."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self._client.get(self._path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(),
            }
            await self._client.replace(self._path, lease)
            log.info("event=leader_released lease=%s identity=%s", self._ref, self.identity)
        except (ApiError, aiohttp.ClientError, OSError) as e:
            log.warning("event=leader_release_failed error=%r", str(e))

    async def _try_acquire_or_renew(self) -> bool:
        try:
            return await self._attempt()
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("event=lease_error lease=%s error=%r", self._ref, str(e))
            return False

    async def _attempt(self) -> bool:
        started = time.monotonic()
        if self.is_leader and self._lease is not None and await self._renew(started):
            return True
        now = micro_time()
        lease = await self._client.get(self._path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self._duration,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                self._lease = await self._client.create(self._collection, body)
            except ApiError as e:
                if e.status == 409:
                    return False
                raise
            self._last_renew = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self._duration)
        if holder and holder != self.identity and self._observed_at + duration > time.monotonic():
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration,
            "acquireTime": spec.get("acquireTime") if holder == self.identity else now,
            "renewTime": now,
            "leaseTransitions": transitions if holder == self.identity else transitions + 1,
        }
        try:
            updated = await self._client.replace(self._path, lease)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        self._accept(updated, started)
        return True

    async def _renew(self, started: float) -> bool:
        """The leader's renewal: one write of the Lease as we last wrote it (its resourceVersion guards it);
        False if someone else wrote it since (then it is read again)."""
        assert self._lease is not None
        lease = dict(self._lease)
        lease["spec"] = {**(lease.get("spec") or {}), "renewTime": micro_time()}
        try:
            updated = await self._client.replace(self._path, lease)
        except ApiError as e:
            if e.status in (404, 409):
                self._lease = None
                return False
            raise
        self._accept(updated, started)
        return True

    def _accept(self, updated: dict[str, Any], started: float) -> None:
        new_spec = updated.get("spec") or {}
        self._lease = updated
        self._observed = (new_spec.get("holderIdentity") or "", new_spec.get("renewTime"))
        self._observed_at = time.monotonic()
        self._last_renew = started
