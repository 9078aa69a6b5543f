"""The sync loop every mode shares: informer events in, backend syncs out.

Informer callbacks (any thread) feed the change tracker and ask the runner for a sync. Each sync (the runner's
thread) takes the tracker's changes and asks the backend for a partial sync of the changed Services, or a full
one at start, after a failure, when the canary says someone flushed our rules, when the node's addresses
changed, and every `full_sync_period`. After a successful sync it deletes stale UDP conntrack entries,
updates the healthCheckNodePort servers and records kube-proxy's metrics.

Nothing is synced before the first complete list of Services and EndpointSlices (a half-known cluster would
remove rules that are still needed), and nothing is ever flushed at start: a restart rewrites the rules in
place, so established connections and forwarding go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.endpoints import EndpointSliceFacts
from dataplane import conntrack
from dataplane.backend import Backend, NodeNetwork, SyncError
from dataplane.healthcheck import HealthCheck, HealthCheckServers, health_check
from dataplane.metrics import Metrics
from dataplane.model import ParsedService, ServiceKey
from dataplane.selection import select
from dataplane.tracker import ChangeTracker, Snapshot

log = logging.getLogger("dataplane.sync")

# Where an informer's transform puts the parsed Service or EndpointSlice (so its cache holds only that).
PARSED = "ironlb.io/parsed"


@dataclass
class LoopOptions:
    full_sync_period: float = 3600.0  # seconds between full rewrites (kube-proxy's FullSyncPeriod)
    retry_after: float = 1.0  # seconds before a failed sync is retried (as a full sync)
    health_timeout: float = 60.0  # a change pending longer than this without a sync: unhealthy
    flush_conntrack: bool = True


class SyncLoop:
    def __init__(
        self,
        tracker: ChangeTracker,
        backend: Backend,
        metrics: Metrics,
        *,
        node_source: Callable[[], NodeNetwork],
        request: Callable[[], None] = lambda: None,
        retry: Callable[[float], None] = lambda after: None,
        health: HealthCheckServers | None = None,
        report_problem: Callable[[str, Mapping[str, Any], str], None] = lambda kind, obj, problems: None,
        options: LoopOptions | None = None,
        after_first_sync: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self.backend = backend
        # Called after successful syncs until it returns True (leaving the mode this node ran before).
        self.after_first_sync = after_first_sync
        self.metrics = metrics
        self.node_source = node_source
        self.request = request
        self.retry = retry
        self.health = health
        self.report_problem = report_problem
        self.options = options or LoopOptions()
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._synced_sources: set[str] = set()
        self._sources = {"services", "endpointslices"}
        self._node: NodeNetwork | None = None
        self._need_full = True
        self._last_full = 0.0
        self._programmed = Snapshot(tracker.node, {})
        self._reported: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._no_local: dict[ServiceKey, tuple[int, int]] = {}
        self._health: dict[ServiceKey, HealthCheck] = {}
        # Health: when the oldest change not yet synced was queued (None: none pending), last success.
        self._pending_since: float | None = None
        self._last_success: float | None = None
        self.syncs = 0

    # ---- events (informer threads) --------------------------------------------------------------------

    def _queued(self) -> None:
        if self._pending_since is None:
            self._pending_since = self.clock()
        self.metrics.last_queued.set(self.wall_clock())

    def on_service(self, kind: str, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        with self._lock:
            if kind == "DELETED":
                self.tracker.delete_service(
                    str(metadata.get("namespace") or ""), str(metadata.get("name")), self.wall_clock()
                )
                self._reported.pop(
                    ("Service", str(metadata.get("namespace")), str(metadata.get("name"))), None
                )
            else:
                parsed = obj.get(PARSED)
                if isinstance(parsed, ParsedService):
                    self.tracker.set_service(parsed, self.wall_clock())
                else:
                    parsed = self.tracker.update_service(obj, self.wall_clock())
                self._report("Service", obj, tuple(str(p) for p in parsed.problems))
            pending = self.tracker.pending
            if pending:
                self._queued()
        if pending:
            self.request()

    def on_slice(self, kind: str, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        with self._lock:
            if kind == "DELETED":
                self.tracker.delete_slice(
                    str(metadata.get("namespace") or ""), str(metadata.get("name")), self.wall_clock()
                )
            else:
                facts = obj.get(PARSED)
                if isinstance(facts, EndpointSliceFacts):
                    self.tracker.set_slice(facts, self.wall_clock())
                else:
                    facts = self.tracker.update_slice(obj, self.wall_clock())
                self._report("EndpointSlice", obj, tuple(str(p) for p in facts.problems))
            pending = self.tracker.pending
            if pending:
                self._queued()
        if pending:
            self.request()

    def source_synced(self, source: str) -> None:
        """An informer finished its first list; syncing starts once Services and EndpointSlices both did."""
        with self._lock:
            self._synced_sources.add(source)
        self.request()

    def _report(self, kind: str, obj: Mapping[str, Any], problems: tuple[str, ...]) -> None:
        metadata = obj.get("metadata") or {}
        ident = (kind, str(metadata.get("namespace")), str(metadata.get("name")))
        if self._reported.get(ident, ()) == problems:
            return
        self._reported[ident] = problems
        if problems:
            self.report_problem(kind, obj, "; ".join(problems))

    # ---- health ---------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """kube-proxy's rule: unhealthy when a change has waited longer than the timeout for a sync."""
        pending = self._pending_since
        return pending is None or self.clock() - pending < self.options.health_timeout

    def health_check(self) -> str | None:
        """For the HealthServer (/healthz, /livez): None when healthy, else why."""
        if self.healthy():
            return None
        return f"a change has waited {self.clock() - (self._pending_since or 0):.0f}s for a successful sync"

    def force_full(self) -> None:
        self._need_full = True
        self.request()

    # ---- the sync (runner thread) -------------------------------------------------------------------

    def sync(self) -> None:
        with self._lock:
            if not self._sources <= self._synced_sources:
                log.info("event=sync_waiting reason=informers_not_synced")
                return
            changes = self.tracker.take()
            queued_since = self._pending_since
        node = self.node_source()
        if node != self._node:
            if self._node is not None:
                log.info("event=node_changed node=%s", node.name)
            self.backend.set_node(node)
            self._node = node
            self._need_full = True
        now = self.clock()
        full = self._need_full or now - self._last_full >= self.options.full_sync_period
        if not full and not changes.changed:
            # A periodic sync: the time to check that nobody flushed our rules.
            if self.backend.flushed():
                full = True
            else:
                self._succeeded(queued_since)
                return
        started = time.monotonic()
        try:
            report = self.backend.sync(changes.snapshot, None if full else changes.changed)
        except SyncError as exc:
            elapsed = time.monotonic() - started
            self._need_full = True
            self.metrics.restore_failures.inc()
            if not full:
                self.metrics.partial_restore_failures.inc()
            log.error(
                "event=sync_failed full=%s seconds=%.3f error=%s retry_in=%.1fs",
                full,
                elapsed,
                exc,
                self.options.retry_after,
            )
            self.retry(self.options.retry_after)
            return
        elapsed = time.monotonic() - started
        self._need_full = False
        if report.full:
            self._last_full = now
        self.syncs += 1
        self.metrics.sync_duration.observe(elapsed)
        (self.metrics.full_sync_duration if report.full else self.metrics.partial_sync_duration).observe(
            elapsed
        )
        wall = self.wall_clock()
        for trigger in changes.trigger_times:
            self.metrics.programming_duration.observe(max(0.0, wall - trigger))
        self.metrics.last_sync.set(wall)
        self.metrics.services.set(len(changes.snapshot.services))
        self._refresh_facts(changes.snapshot, None if report.full else changes.changed)
        log.info(
            "event=synced full=%s services=%d changed=%d seconds=%.3f %s",
            report.full,
            len(changes.snapshot.services),
            len(changes.changed),
            elapsed,
            report.detail,
        )
        self._after_sync(changes.snapshot, None if report.full else changes.changed)
        if self.after_first_sync is not None and self.after_first_sync():
            self.after_first_sync = None
        self._succeeded(queued_since)

    def _succeeded(self, queued_since: float | None) -> None:
        with self._lock:
            if self._pending_since == queued_since or not self.tracker.pending:
                self._pending_since = None if not self.tracker.pending else self.clock()
        self._last_success = self.clock()

    def _after_sync(
        self, snapshot: Snapshot, changed: set[ServiceKey] | frozenset[ServiceKey] | None
    ) -> None:
        previous, self._programmed = self._programmed, snapshot
        if self.options.flush_conntrack:
            keys = conntrack.changed_keys(previous, snapshot, changed)
            conntrack.flush(conntrack.stale_flows(previous, snapshot, keys))
        if self.health is not None:
            checks: dict[int, HealthCheck] = {}
            for check in self._health.values():
                checks.setdefault(check.port, check)
            self.health.update(checks)

    def _refresh_facts(
        self, snapshot: Snapshot, changed: set[ServiceKey] | frozenset[ServiceKey] | None
    ) -> None:
        """The per-Service facts behind the health checks and the no-local-endpoints gauge, recomputed only
        for the Services that changed (a partial sync's cost must not grow with the number of Services)."""
        keys = (
            set(snapshot.services) | set(self._no_local) | set(self._health) if changed is None else changed
        )
        for key in keys:
            info = snapshot.services.get(key)
            self._no_local.pop(key, None)
            self._health.pop(key, None)
            if info is None:
                continue
            internal = external = 0
            for port, endpoints in info.port_endpoints():
                sel = select(port, endpoints)
                internal += sel.has_any and not sel.has_internal
                external += sel.has_any and port.external_policy_local and not sel.has_external
            if internal or external:
                self._no_local[key] = (internal, external)
            check = health_check(info)
            if check is not None:
                self._health[key] = check
        self.metrics.no_local_endpoints.labels("internal").set(sum(i for i, _ in self._no_local.values()))
        self.metrics.no_local_endpoints.labels("external").set(sum(e for _, e in self._no_local.values()))
