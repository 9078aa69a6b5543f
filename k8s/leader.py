"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules plus write fencing.

- The lease is free when it has no holder, or when its record (holder, renewTime) has not changed for
  leaseDurationSeconds of *our* clock (observed locally, so clock skew between replicas does not matter).
- The leader renews every retry period and has lost when no renewal succeeded for renew_deadline, which is
  shorter than the lease duration: it stops before anyone else may take over. A renewal is one write of the
  Lease as the leader last wrote it (client-go's fast path); only when that conflicts is it read again.
- Fencing: `may_write()` is False as soon as renew_deadline has passed since the start of the last successful
  renewal (monotonic clock), even before the renew loop notices. A leader that was paused (a stopped process,
  a starved thread) checks it before each write and never writes late.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from k8s.client import REQUEST_ERRORS, ApiError, Client
from k8s.meta import JSON, micro_time, resource_path

log = logging.getLogger("k8s.leader")

JITTER_FACTOR = 1.2


class LeaderElector:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        jitter: float = JITTER_FACTOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # client-go's checks: the leader must be able to give up before a standby may take over, and to try
        # more than once before giving up.
        if not 0 < JITTER_FACTOR * retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs 0 < 1.2 * retry_period < renew_deadline < lease_duration")
        self._client = client
        self._namespace = namespace
        self._name = name
        self._path = resource_path("coordination.k8s.io/v1", "leases", namespace, name)
        self._collection = resource_path("coordination.k8s.io/v1", "leases", namespace)
        self._ref = f"{namespace}/{name}"
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.jitter = jitter
        self._clock = clock
        self._observed: tuple[Any, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # start of the last successful acquire or renew
        self._lease: JSON | None = None  # the Lease as we last wrote it (renewals need no read)
        self._duration_seconds = max(1, math.ceil(lease_duration))
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    def may_write(self) -> bool:
        """Whether this replica may write as the leader right now (see the module's fencing note)."""
        renewed = self._renewed_at
        return self._leader and renewed is not None and self._clock() - renewed < self.renew_deadline

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica holds the lease (True) or `stop` is set (False)."""
        logged = False
        while not stop.is_set():
            if self.try_acquire_or_renew():
                self._leader = True
                log.info("event=leader_acquired lease=%s identity=%s", self._ref, self.identity)
                return True
            if not logged:
                log.info("event=leader_waiting lease=%s identity=%s", self._ref, self.identity)
                logged = True
            # Jittered as client-go's acquire loop, so standbys started together do not knock in step (0: a
            # standby polls every retry period, for the quickest takeover).
            stop.wait(self.retry_period * (1 + random.random() * self.jitter))
        return False

    def renew(self, stop: threading.Event) -> bool:
        """Renew every retry period until `stop` is set (True) or the lease is lost (False): no renewal
        succeeded for renew_deadline."""
        while not stop.wait(self.retry_period):
            if self.try_acquire_or_renew():
                continue
            if not self.may_write():
                self._leader = False
                self._lease = None
                log.error("event=leader_lost lease=%s identity=%s", self._ref, self.identity)
                return False
        return True

    def run(
        self,
        stop: threading.Event,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
    ) -> None:
        """client-go's Run: acquire, call on_started_leading, renew; when leadership ends (lost, or stop set)
        call on_stopped_leading, and release the lease on a clean stop so a standby takes over at once."""
        if not self.acquire(stop):
            return
        kept = False
        try:
            on_started_leading()
            kept = self.renew(stop)
        finally:
            if kept:
                self.release()
            on_stopped_leading()

    def release(self) -> None:
        """Hand the lease back (clean shutdown), so that a standby replica takes over at once."""
        if not self._leader:
            return
        self._leader = False
        self._renewed_at = None
        self._lease = None
        try:
            lease = self._client.get_or_none(self._path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(),
            }
            self._client.replace(self._path, lease)
            log.info("event=leader_released lease=%s identity=%s", self._ref, self.identity)
        except REQUEST_ERRORS as exc:
            log.warning("event=leader_release_failed lease=%s error=%r", self._ref, str(exc))

    def try_acquire_or_renew(self) -> bool:
        """One attempt; errors are logged and count as a failed attempt."""
        started = self._clock()
        try:
            held = self._attempt()
        except REQUEST_ERRORS as exc:
            log.warning("event=lease_error lease=%s error=%r", self._ref, str(exc))
            return False
        if held:
            self._renewed_at = started
        return held

    def _attempt(self) -> bool:
        timeout = self.renew_deadline  # a hung request must not outlive the deadline it is meant to meet
        if self._leader and self._lease is not None and self._renew(timeout):
            return True
        now = micro_time()
        try:
            lease: JSON | None = self._client.request("GET", self._path, timeout=timeout)
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        if lease is None:
            body: JSON = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self._duration_seconds,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = self._client.request("POST", self._collection, body=body, timeout=timeout)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            self._accept(created)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > self._clock():
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration_seconds,
            "acquireTime": spec.get("acquireTime") if holder == self.identity else now,
            "renewTime": now,
            "leaseTransitions": transitions if holder == self.identity else transitions + 1,
        }
        try:
            updated = self._client.request("PUT", self._path, body=lease, timeout=timeout)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        self._accept(updated)
        return True

    def _renew(self, timeout: float) -> bool:
        """client-go's fast path: the leader writes the Lease as it last wrote it with a new renewTime (its
        resourceVersion guards the write); False when someone else wrote it since, and it is read again."""
        assert self._lease is not None
        lease = {**self._lease, "spec": {**(self._lease.get("spec") or {}), "renewTime": micro_time()}}
        try:
            updated = self._client.request("PUT", self._path, body=lease, timeout=timeout)
        except ApiError as exc:
            if exc.status in (404, 409):
                self._lease = None
                return False
            raise
        self._accept(updated)
        return True

    def _accept(self, written: JSON) -> None:
        """Our write of the Lease succeeded: remember it, as others will see it."""
        self._lease = written
        spec = written.get("spec") or {}
        self._observed = (spec.get("holderIdentity") or "", spec.get("renewTime"))
        self._observed_at = self._clock()
