"""What to do about one Service, decided over plain data: the kopf shell applies the returned `Outcome`."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.errors import RequestError
from common.services import POOL_ANNOTATION_OUT, assigned_ips, ingress_for, is_handled
from controller.allocator import AllocationError, Allocator, Assignment, PoolStats
from controller.requests import parse_service

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
    except RequestError as e:
        outcome.pending = True
        outcome.failure = f"invalid {e.field}: {e.message}"
        message = f'Failed to allocate IP for "{key}": {e}'
        outcome.events.append(Event("Warning", "AllocationFailed", message))
        outcome.action = "invalid_request"
        return outcome

    try:
        assignment = allocator.assign(request)
    except AllocationError as e:
        outcome.pending = True
        outcome.failure = e.reason
        outcome.events.append(
            Event("Warning", "AllocationFailed", f'Failed to allocate IP for "{key}": {e.reason}')
        )
        outcome.action = "allocation_failed"
        if previous is not None and allocator.assignment(key) is None:
            outcome.released = True
        if current and allocator.assignment(key) is None:
            # The IPs in status are not (or no longer) this Service's: a user must not keep reaching it there.
            outcome.ingress = []
            if not withdrawn:
                message = f"clearing assignment {format_ips(current)}: {e.reason}"
                outcome.events.append(Event("Normal", "ClearAssignment", message))
            if POOL_ANNOTATION_OUT in annotations:
                outcome.pool_annotation = None
        return outcome

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


def pool_status(stats: PoolStats) -> dict[str, int]:
    """The IPAddressPool status from the allocator's numbers: assigned and available per family (int64)."""
    cap = 2**63 - 1
    return {
        "assignedIPv4": min(stats.ipv4_in_use, cap),
        "assignedIPv6": min(stats.ipv6_in_use, cap),
        "availableIPv4": min(max(stats.ipv4_total - stats.ipv4_in_use, 0), cap),
        "availableIPv6": min(max(stats.ipv6_total - stats.ipv6_in_use, 0), cap),
    }
