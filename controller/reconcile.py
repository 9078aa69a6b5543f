"""What to do about one Service, decided over plain data: the kopf shell applies the returned `Outcome`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.errors import RequestError
from common.pools import IPAddress
from common.services import POOL_ANNOTATION_OUT, assigned_ips, ingress_for, is_handled, service_key
from controller.allocator import AllocationError, Allocator, Assignment, PoolStats
from controller.requests import FamilyMismatch, holding_request, parse_service

UNCHANGED: Any = object()  # marker: leave the pool annotation as it is


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """The writes one reconciliation needs. `ingress` None leaves status alone; [] clears it."""

    ingress: list[dict[str, str]] | None = None
    pool_annotation: Any = UNCHANGED  # str to set, None to remove, UNCHANGED
    events: list[Event] = field(default_factory=list)
    pending: bool = False
    failure: str | None = None  # why it is pending (for event de-duplication and logs)
    waiting_on: tuple[str, ...] = ()  # pending: the pools where a released IP may let it through
    released: bool = False  # an IP went back to a pool: pending Services may fit now
    assignment: Assignment | None = None
    action: str = "none"  # for the log line


def format_ips(ips: Sequence[IPAddress]) -> str:
    """MetalLB's wording (Go's %q of a []string): ["192.168.10.90" "fc00::1"]."""
    return "[" + " ".join(f'"{ip}"' for ip in ips) + "]"


def reconcile_service(
    key: str,
    service: Mapping[str, Any] | None,
    namespace_labels: Mapping[str, str],
    allocator: Allocator,
    load_balancer_class: str | None,
    withdrawn: Sequence[IPAddress] = (),
) -> Outcome:
    """Bring the allocator's view of `key` in line with the Service and say which writes follow.

    `withdrawn` holds the IPs a config change just took away from this Service (already released).
    """
    previous = allocator.assignment(key)
    outcome = Outcome()
    if withdrawn:
        message = f"current IP {format_ips(withdrawn)} not allowed by config, clearing"
        outcome.events.append(Event("Normal", "ClearAssignment", message))
        outcome.released = True
    if service is None:
        if previous is not None:
            allocator.release(key)
            outcome.released = True
            outcome.action = "released_deleted"
        return outcome

    current = assigned_ips(service)
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    spec = service.get("spec") or {}
    if not is_handled(service, load_balancer_class):
        if previous is not None:
            allocator.release(key)
            outcome.released = True
        is_load_balancer = spec.get("type") == "LoadBalancer"
        # After a type change no one else owns the status; after a class change another controller does, so we
        # only take back what is still ours.
        ours = current and (not is_load_balancer or (previous is not None and tuple(previous.ips) == current))
        # A real API server clears the status itself on a type change: what we held is cleared all the same.
        cleared = current if ours else (previous.ips if previous is not None and not is_load_balancer else ())
        if ours:
            outcome.ingress = []
        if cleared:
            reason = (
                f"service type is {spec.get('type')!s}, not LoadBalancer"
                if not is_load_balancer
                else f"service has loadBalancerClass {spec.get('loadBalancerClass')!s}, not ours"
            )
            outcome.events.append(
                Event("Normal", "ClearAssignment", f"clearing assignment {format_ips(cleared)}: {reason}")
            )
            outcome.action = "cleared"
        if POOL_ANNOTATION_OUT in annotations and (ours or previous is not None):
            outcome.pool_annotation = None
        return outcome

    try:
        request = parse_service(service, namespace_labels)
    except FamilyMismatch as e:
        # Well-formed but impossible: like MetalLB, give up the current IP rather than keep one that is not
        # what the Service asks for.
        allocator.release(key)
        return _failed(outcome, key, str(e), current, previous, allocator, annotations, withdrawn)
    except RequestError as e:
        outcome.pending = True
        outcome.failure = f"invalid {e.field}: {e.message}"
        message = f'Failed to allocate IP for "{key}": {e}'
        outcome.events.append(Event("Warning", "AllocationFailed", message))
        outcome.action = "invalid_request"
        # A malformed request keeps what the Service holds until it is fixed, but its status must never show
        # an IP it does not hold (one that might be given to someone else).
        held = previous.ips if previous is not None else ()
        if current and not set(current) <= set(held):
            outcome.ingress = ingress_for(held)
            reason = "not held by this Service"
            message = f"clearing assignment {format_ips(current)}: {reason}"
            outcome.events.append(Event("Normal", "ClearAssignment", message))
            if not held and POOL_ANNOTATION_OUT in annotations:
                outcome.pool_annotation = None
        return outcome

    try:
        assignment = allocator.assign(request)
    except AllocationError as e:
        outcome.waiting_on = e.waiting_on
        return _failed(outcome, key, e.reason, current, previous, allocator, annotations, withdrawn)

    outcome.assignment = assignment
    if previous is not None and tuple(previous.ips) != tuple(assignment.ips):
        outcome.released = True
    if tuple(assignment.ips) != current:
        outcome.ingress = ingress_for(assignment.ips)
        outcome.events.append(Event("Normal", "IPAllocated", f"Assigned IP {format_ips(assignment.ips)}"))
        outcome.action = "assigned"
    if annotations.get(POOL_ANNOTATION_OUT) != assignment.pool:
        outcome.pool_annotation = assignment.pool
    return outcome


def _failed(
    outcome: Outcome,
    key: str,
    reason: str,
    current: Sequence[IPAddress],
    previous: Assignment | None,
    allocator: Allocator,
    annotations: Mapping[str, Any],
    withdrawn: Sequence[IPAddress],
) -> Outcome:
    """The Service cannot get IPs now: pending, AllocationFailed, and its status cleared if it shows IPs it
    no longer holds."""
    outcome.pending = True
    outcome.failure = reason
    message = f'Failed to allocate IP for "{key}": {reason}'
    outcome.events.append(Event("Warning", "AllocationFailed", message))
    outcome.action = "allocation_failed"
    if previous is not None and allocator.assignment(key) is None:
        outcome.released = True
    if current and allocator.assignment(key) is None:
        # The IPs in status are not (or no longer) this Service's: a user must not keep reaching it there.
        outcome.ingress = []
        if not withdrawn:
            message = f"clearing assignment {format_ips(current)}: {reason}"
            outcome.events.append(Event("Normal", "ClearAssignment", message))
        if POOL_ANNOTATION_OUT in annotations:
            outcome.pool_annotation = None
    return outcome


@dataclass(frozen=True)
class Restored:
    """What start-up did with the IPs one Service shows."""

    key: str
    ips: tuple[IPAddress, ...]  # the IPs held (all it shows, or some), or those it could not hold
    held: bool  # the allocator holds them for this Service now
    exact: bool  # under its current, valid request (else held until it is reconciled, or not at all)
    reason: str = ""  # why not exact / not held, for the log


def creation_order(service: Mapping[str, Any]) -> tuple[str, str]:
    metadata = service.get("metadata") or {}
    return str(metadata.get("creationTimestamp") or ""), service_key(service)


def restore_assignments(
    allocator: Allocator,
    services: Iterable[Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    load_balancer_class: str | None,
) -> list[Restored]:
    """Put the IPs Services already show back into the allocator before anything is assigned, oldest Service
    first, so that none of them is handed to another Service.

    A Service whose request is valid and met by its IPs adopts them as they are. Any other Service (malformed
    request, one its IPs no longer meet, or in a namespace not in ``namespace_labels``) still holds them,
    under holding_request(), until it is reconciled: the IPs are only given up once its status has been
    moved or cleared. Not held: IPs outside every pool (no one can be given them), IPs an older Service holds
    and may not share, and the second of a dual-stack pair whose IPs now lie in two pools.
    """
    report = []
    for service in sorted(services, key=creation_order):
        ips = assigned_ips(service)
        if not ips or not is_handled(service, load_balancer_class):
            continue
        key = service_key(service)
        namespace = str((service.get("metadata") or {}).get("namespace") or "")
        known = namespace_labels.get(namespace)
        labels = known if known is not None else {}
        try:
            request = parse_service(service, labels)
        except RequestError as e:
            reason = str(e)
        else:
            # Without its namespace's labels the pool's serviceAllocation cannot be judged: held only.
            if known is not None and allocator.restore(request, ips) is not None:
                report.append(Restored(key, ips, held=True, exact=True))
                continue
            reason = "its request is not met by these IPs" if known is not None else "namespace not known yet"
        # All of them if they can be held together, else as many as can: one of a dual-stack pair may now lie
        # in another pool, or be shared with an older Service that may no longer share it.
        for subset in (ips, *((ip,) for ip in ips)) if len(ips) > 1 else (ips,):
            if allocator.hold(holding_request(service, labels, subset), subset) is not None:
                report.append(Restored(key, subset, held=True, exact=False, reason=reason))
                break
        else:
            reason = "outside every pool, or in use by an older Service"
            report.append(Restored(key, ips, held=False, exact=False, reason=reason))
    return report


def pool_status(stats: PoolStats) -> dict[str, int]:
    """The IPAddressPool status from the allocator's numbers: assigned and available per family (int64)."""
    cap = 2**63 - 1
    return {
        "assignedIPv4": min(stats.ipv4_in_use, cap),
        "assignedIPv6": min(stats.ipv6_in_use, cap),
        "availableIPv4": min(max(stats.ipv4_total - stats.ipv4_in_use, 0), cap),
        "availableIPv6": min(max(stats.ipv6_total - stats.ipv6_in_use, 0), cap),
    }
