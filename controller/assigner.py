"""Assigning IPs to Services: one Service at a time, from the work queue.

A worker takes a Service's key, runs the pure `reconcile_service` over the cached Service, the allocator and
the namespace's labels, and applies the outcome: one status write (the ingress IPs and the pool annotation
together), then the outcome's Events. A failed write is retried with exponential backoff. Services that
cannot get an IP wait in `pending`; a released IP wakes the oldest one waiting on its pool. At start-up,
`restore` puts the IPs Services already show back into the allocator before anything new is assigned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from common.pools import Config, IPAddress
from common.services import POOL_ANNOTATION_OUT, PREFIXES, assigned_ips, is_handled
from controller import metrics
from controller.allocator import Allocator, Assignment
from controller.api import Api
from controller.caches import Caches, labels_of
from controller.reconcile import (
    UNCHANGED,
    Event,
    creation_order,
    reconcile_service,
    restore_assignments,
)
from controller.workers import Workers
from k8s.client import REQUEST_ERRORS, ApiError
from k8s.events import EventRecorder
from k8s.meta import JSON, key_of

log = logging.getLogger("controller")

# A status write that failed is retried after 1 s, then 2, 4, ... up to 5 minutes.
WRITE_RETRY_FIRST = 1.0
WRITE_RETRY_MAX = 300.0


def request_revision(service: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a Service's request depends on that its user may change: its spec (generation) and MetalLB's
    annotations (not the one we write). Edits to anything else do not repeat a failure event."""
    metadata = service.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    ours = sorted(
        (name, str(value))
        for name, value in annotations.items()
        if name.startswith(PREFIXES) and name != POOL_ANNOTATION_OUT
    )
    return metadata.get("generation"), tuple(ours)


class Assigner:
    def __init__(
        self,
        caches: Caches,
        api: Api,
        recorder: EventRecorder,
        load_balancer_class: str | None,
        pools_changed: Callable[[], None],
    ) -> None:
        self.caches = caches
        self.api = api
        self.recorder = recorder
        self.load_balancer_class = load_balancer_class
        self.pools_changed = pools_changed  # the pools' use changed: their status is written soon
        self.allocator = Allocator(Config())
        self.workers = Workers(self._reconcile)
        self.restored = False
        self.config_partial: str | None = None  # why the config in force leaves the ConfigMap out
        self._deferred: set[str] = set()  # Services left alone meanwhile: their IPs lie in no known pool
        self.assignments: dict[str, Assignment] = {}
        self.pending: dict[str, None] = {}  # insertion-ordered: the oldest pending Service is retried first
        # Pending Service -> the pools where a released IP may let it through (none: it waits for a change).
        self.waiting: dict[str, tuple[str, ...]] = {}
        self._woken: dict[str, str] = {}  # pending Service retried because an IP of this pool was released
        self.withdrawn: dict[str, tuple[IPAddress, ...]] = {}
        self.failure_signatures: dict[str, tuple[Any, ...]] = {}
        # Status writes that failed: the next delay, the 4xx answer already reported, the retry timer.
        self._write_delays: dict[str, float] = {}
        self._write_warnings: dict[str, str] = {}
        self._write_timers: dict[str, asyncio.TimerHandle] = {}
        self._namespace_failures: dict[str, int] = {}

    # ---- what starts a reconciliation --------------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        self.workers.add(key)

    def service_changed(self, key: str) -> None:
        """An informer saw the Service change. Before restore, nothing: restore queues every Service then."""
        if self.restored:
            self.enqueue(key)

    def namespace_seen(self, namespace: str, labels_changed: bool) -> None:
        """kopf's watch reported the namespace. When its labels changed, pools' namespace selectors may match
        now: retry what waits there. Assigned IPs stay."""
        self._namespace_failures.pop(namespace, None)
        if not labels_changed:
            return
        for key in list(self.pending):
            if key.startswith(f"{namespace}/"):
                self.enqueue(key)

    def retry_pending(self) -> None:
        for key in list(self.pending):
            self.enqueue(key)

    def withdraw(self, released: Iterable[str]) -> None:
        """A new config took these Services' IPs away: clear them (and try again)."""
        for key in released:
            old = self.assignments.pop(key, None)
            self.withdrawn[key] = tuple(old.ips) if old is not None else ()
            log.info("event=withdrawn service=%s ips=%s", key, ",".join(map(str, self.withdrawn[key])))
            self.enqueue(key)

    # ---- start-up -----------------------------------------------------------------------------------------

    def restore(self) -> None:
        """Put the IPs Services already show back into the allocator before anything new is assigned."""
        services = self.caches.services.list()
        report = restore_assignments(
            self.allocator, services, self.caches.namespace_labels, self.load_balancer_class
        )
        for restored in report:
            ips = ",".join(map(str, restored.ips))
            assignment = self.allocator.assignment(restored.key)
            if restored.held and assignment is not None:
                self.assignments[restored.key] = assignment
            if not restored.exact:
                # Held (or not) until its reconciliation moves or clears it.
                log.warning(
                    "event=restore_held service=%s ips=%s held=%s reason=%r",
                    restored.key, ips, str(restored.held).lower(), restored.reason,
                )  # fmt: skip
        self.restored = True
        adopted = sum(1 for r in report if r.exact)
        held = sum(1 for r in report if r.held and not r.exact)
        log.info("event=restored adopted=%d refused=%d held=%d", adopted, len(report) - adopted - held, held)
        for service in sorted(services, key=creation_order):
            self.enqueue(key_of(service))
        self.pools_changed()

    def restore_deferred(self) -> None:
        """The ConfigMap's pools are known again: the Services left alone take their IPs back first."""
        if not self._deferred:
            return
        deferred = [s for s in (self.caches.service(k) for k in sorted(self._deferred)) if s is not None]
        self._deferred.clear()
        for restored in restore_assignments(
            self.allocator, deferred, self.caches.namespace_labels, self.load_balancer_class
        ):
            log.info(
                "event=restore_deferred service=%s ips=%s held=%s",
                restored.key, ",".join(map(str, restored.ips)), str(restored.held).lower(),
            )  # fmt: skip

    # ---- one Service ---------------------------------------------------------------------------------------

    async def _reconcile(self, key: str) -> None:
        woken_by = self._woken.pop(key, None)
        released_from = self.allocator.assignment(key)
        try:
            await self._reconcile_one(key)
        finally:
            after = self.allocator.assignment(key)
            if released_from is not None and (after is None or after.ips != released_from.ips):
                self._wake(released_from.pool)
            if woken_by is not None and after is None:
                self._wake(woken_by, after=key)  # it could not use the IP: the next one in line may

    def _wake(self, pool: str, after: str | None = None) -> None:
        """An IP of `pool` was released: retry the oldest pending Service that waits on that pool (after
        `after`, when the one before could not use it), not every pending Service. 1,000 pending Services
        and 10 releases used to mean 10,000 reconciliations (and log lines); now about 10."""
        passed = after is None
        for key in self.pending:
            if not passed:
                passed = key == after
                continue
            if pool in self.waiting.get(key, ()) and key not in self._woken:
                self._woken[key] = pool
                self.enqueue(key)
                return

    async def _reconcile_one(self, key: str) -> None:
        service = self.caches.service(key)
        if not self.restored:
            self.pending[key] = None
            return
        namespace, _, name = key.partition("/")
        labels = self.caches.namespace_labels
        if service is not None and namespace not in labels:
            # A namespace created after start-up whose watch event has not arrived yet: its labels may decide
            # the pool (serviceAllocation.namespaceSelectors), so read them now rather than guess.
            await self._load_namespace(namespace)
            service = self.caches.service(key)
            if service is not None and namespace not in labels:
                self._namespace_unknown(key, service, namespace)
                return
        if service is not None and self._defer(key, service):
            return
        withdrawn = self.withdrawn.pop(key, ())
        outcome = reconcile_service(
            key, service, labels.get(namespace, {}), self.allocator, self.load_balancer_class, withdrawn
        )
        metrics.updates.inc()
        assignment = self.allocator.assignment(key)
        if assignment is None:
            self.assignments.pop(key, None)
        else:
            self.assignments[key] = assignment
        if outcome.pending and service is not None:
            self.pending.setdefault(key, None)
            self.waiting[key] = outcome.waiting_on
        else:
            self.pending.pop(key, None)
            self.waiting.pop(key, None)
        if outcome.released or outcome.assignment is not None or service is None:
            self.pools_changed()
        events = list(outcome.events)
        if outcome.pending and service is not None:
            signature = (outcome.failure, *request_revision(service))
            if self.failure_signatures.get(key) == signature:
                events = [e for e in events if e.reason != "AllocationFailed"]  # said it already
            self.failure_signatures[key] = signature
        else:
            self.failure_signatures.pop(key, None)
        if outcome.action != "none" or outcome.pending:
            log.info(
                "event=%s service=%s ips=%s pool=%s reason=%r",
                outcome.action,
                key,
                ",".join(str(ip) for ip in (assignment.ips if assignment else ())) or "-",
                assignment.pool if assignment else "-",
                outcome.failure or "",
            )
        if service is None:
            self._write_settled(key)
            return
        # One write through the status subresource carries the pool annotation too: the Service status
        # strategy resets only spec, so the controller needs no right to update Services themselves (a
        # compromised controller could otherwise rewrite any Service's selector or externalIPs).
        patch: JSON = {}
        if outcome.ingress is not None:
            patch["status"] = {"loadBalancer": {"ingress": outcome.ingress or None}}
        if outcome.pool_annotation is not UNCHANGED:
            patch["metadata"] = {"annotations": {POOL_ANNOTATION_OUT: outcome.pool_annotation}}
        try:
            if patch:
                path = f"/api/v1/namespaces/{namespace}/services/{name}/status"
                written = await self.api.write(self.api.client.merge_patch, path, patch)
                self.caches.remember_service(key, written)
        except ApiError as e:
            if e.status == 404:
                self._write_settled(key)
                return  # deleted meanwhile; its DELETED event releases the IP
            self._write_failed(key, service, e)
            return
        except REQUEST_ERRORS as e:
            self._write_failed(key, service, e)
            return
        self._write_settled(key)
        for event in events:
            self._event(service, event)

    def _event(self, obj: JSON, event: Event) -> None:
        self.recorder.event(obj, event.type, event.reason, event.message, default_kind="Service")

    async def _load_namespace(self, name: str) -> None:
        try:
            body = await self.api.read(self.api.client.get_or_none, f"/api/v1/namespaces/{name}")
        except REQUEST_ERRORS as e:
            log.warning("event=namespace_read_failed namespace=%s error=%r", name, str(e))
            return
        if body is not None and name not in self.caches.namespace_labels:
            self.caches.namespace_labels[name] = labels_of(body)
            self._namespace_failures.pop(name, None)

    def _namespace_unknown(self, key: str, service: JSON, namespace: str) -> None:
        """Fail closed: without the namespace's labels no pool decision is safe (a NotIn or DoesNotExist
        namespace selector would admit the Service), so the Service waits and is retried with backoff."""
        self.pending.setdefault(key, None)
        failures = self._namespace_failures[namespace] = self._namespace_failures.get(namespace, 0) + 1
        delay = min(30.0, 2.0 ** min(failures, 5))
        signature = ("namespace-unknown", *request_revision(service))
        if self.failure_signatures.get(key) != signature:
            self.failure_signatures[key] = signature
            message = (
                f'Failed to allocate IP for "{key}": cannot read the labels of namespace "{namespace}", '
                "which address pools may select on; retrying"
            )
            self._event(service, Event("Warning", "AllocationFailed", message))
        log.info("event=namespace_unknown service=%s namespace=%s retry_in=%.0fs", key, namespace, delay)
        self.workers.add_after(key, delay)

    def _defer(self, key: str, service: JSON) -> bool:
        """While the ConfigMap is left out, leave alone a Service whose IPs lie in no pool we know: they most
        likely come from the ConfigMap's pools, and moving them would renumber the Service for a typo."""
        ips = assigned_ips(service)
        if (
            self.config_partial is None
            or not ips
            or not is_handled(service, self.load_balancer_class)
            or self.allocator.assignment(key) is not None
            or any(self.allocator.pool_for(ip) is not None for ip in ips)
        ):
            return False
        if key not in self._deferred:
            log.warning(
                "event=deferred service=%s ips=%s reason=%r",
                key, ",".join(map(str, ips)), self.config_partial,
            )  # fmt: skip
        self._deferred.add(key)
        self.pending.setdefault(key, None)
        return True

    # ---- status write backoff ------------------------------------------------------------------------------

    def _write_failed(self, key: str, service: JSON, error: Exception) -> None:
        """Retry with exponential backoff (never a hot loop against a server that keeps saying no); a 4xx is
        the server refusing what we wrote, so the Service's user is told once per distinct answer."""
        metrics.update_errors.inc()
        previous = self._write_delays.get(key)
        delay = WRITE_RETRY_FIRST if previous is None else min(WRITE_RETRY_MAX, 2 * previous)
        self._write_delays[key] = delay
        log.warning("event=write_failed service=%s error=%r retry_in=%.0fs", key, str(error), delay)
        if isinstance(error, ApiError) and 400 <= error.status < 500:
            answer = f"{error.status} {error.reason}: {error.message}"
            if self._write_warnings.get(key) != answer:
                self._write_warnings[key] = answer
                message = (
                    f"cannot write the status: {answer}; retrying with backoff "
                    f"(now {delay:.0f}s, at most {WRITE_RETRY_MAX:.0f}s)"
                )
                self._event(service, Event("Warning", "UpdateStatusFailed", message))
        timer = self._write_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._write_timers[key] = asyncio.get_running_loop().call_later(delay, self._retry_write, key)

    def _retry_write(self, key: str) -> None:
        self._write_timers.pop(key, None)
        self.enqueue(key)

    def _write_settled(self, key: str) -> None:
        """The status is as it should be (or the Service is gone): forget the backoff."""
        self._write_delays.pop(key, None)
        self._write_warnings.pop(key, None)
        timer = self._write_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
