"""Turns Service and EndpointSlice events into snapshots, and knows which Services changed since the last one.

kube-proxy's ServiceChangeTracker and EndpointsChangeTracker in one pure object: the daemon feeds it every
informer event, and the sync loop takes a `Changes` (the whole snapshot plus the Services whose forwarding
changed) before each sync. A Service counts as changed only when what the dataplane renders from it changed:
an EndpointSlice update that touches nothing the dataplane uses (a label, a hint, a targetRef) is no change.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.endpoints import EndpointSliceFacts, slice_facts
from dataplane.model import Endpoint, ParsedService, ServiceInfo, ServiceKey, ServicePort, parse_service


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The Services to forward on `node`, each with its ports and their endpoints."""

    node: str
    services: Mapping[ServiceKey, ServiceInfo]

    def ports(self, family: int | None = None) -> list[tuple[ServicePort, tuple[Endpoint, ...]]]:
        found = []
        for info in self.services.values():
            for port, endpoints in info.port_endpoints():
                if family is None or port.family == family:
                    found.append((port, endpoints))
        return found


@dataclass(frozen=True, slots=True)
class Changes:
    snapshot: Snapshot
    changed: frozenset[ServiceKey]  # Services whose forwarding differs from the previous snapshot
    trigger_times: tuple[float, ...]  # when the changes now due were triggered (epoch seconds), for latency


def parse_trigger_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (the last-change-trigger-time annotation); None if invalid."""
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _ip_sort_key(endpoint: Endpoint) -> tuple[int, int, int]:
    address = ipaddress.ip_address(endpoint.ip)
    return (address.version, int(address), endpoint.port)


def endpoints_for(
    port: ServicePort, slices: Mapping[str, EndpointSliceFacts], node: str
) -> tuple[Endpoint, ...]:
    """The endpoints of one service port: every slice of its family with a port of the same name and protocol.

    An address listed by several slices (possible while the controller moves endpoints between slices) is
    kept once, preferring its ready entry. Sorted by address, so rendering is deterministic."""
    found: dict[tuple[str, int], Endpoint] = {}
    for facts in slices.values():
        if facts.family != port.family:
            continue
        for slice_port in facts.ports:
            if slice_port.name != port.port_name or slice_port.protocol != port.protocol:
                continue
            for ep in facts.endpoints:
                key = (ep.address, slice_port.port)
                previous = found.get(key)
                if previous is not None and (previous.ready or not ep.ready):
                    continue
                found[key] = Endpoint(
                    ip=ep.address,
                    port=slice_port.port,
                    ready=ep.ready,
                    serving=ep.serving,
                    terminating=ep.terminating,
                    local=bool(node) and ep.node_name == node,
                    zone=ep.zone,
                )
    return tuple(sorted(found.values(), key=_ip_sort_key))


class ChangeTracker:
    """Accumulates events between syncs. Not thread-safe: the daemon serialises calls with one lock."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._services: dict[ServiceKey, ParsedService] = {}
        self._slices: dict[ServiceKey, dict[str, EndpointSliceFacts]] = {}
        self._slice_owner: dict[tuple[str, str], ServiceKey] = {}  # (namespace, slice name) -> Service
        self._state: dict[ServiceKey, ServiceInfo] = {}
        self._dirty: dict[ServiceKey, float] = {}  # Service -> earliest trigger time of its pending changes

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def _touch(self, key: ServiceKey, when: float) -> None:
        previous = self._dirty.get(key)
        self._dirty[key] = when if previous is None else min(previous, when)

    def update_service(self, obj: Mapping[str, Any], now: float) -> ParsedService:
        return self.set_service(parse_service(obj), now)

    def set_service(self, parsed: ParsedService, now: float) -> ParsedService:
        """A Service, already parsed (the daemon parses in the informer's transform and caches only that)."""
        if self._services.get(parsed.key) != parsed:
            self._services[parsed.key] = parsed
            self._touch(parsed.key, now)
        return parsed

    def delete_service(self, namespace: str, name: str, now: float) -> None:
        key = ServiceKey(namespace, name)
        if self._services.pop(key, None) is not None:
            self._touch(key, now)

    def update_slice(self, obj: Mapping[str, Any], now: float) -> EndpointSliceFacts:
        return self.set_slice(slice_facts(obj), now)

    def set_slice(self, facts: EndpointSliceFacts, now: float) -> EndpointSliceFacts:
        """An EndpointSlice, already parsed."""
        slice_id = (facts.namespace, facts.name)
        owner = self._slice_owner.get(slice_id)
        key = ServiceKey(facts.namespace, facts.service) if facts.service else None
        if owner is not None and owner != key:
            self._forget_slice(slice_id, now)  # relabelled to another Service (or unlabelled)
        if key is None:
            return facts
        slices = self._slices.setdefault(key, {})
        if slices.get(facts.name) != facts:
            slices[facts.name] = facts
            self._slice_owner[slice_id] = key
            when = parse_trigger_time(facts.trigger_time)
            self._touch(key, now if when is None or when > now else when)
        return facts

    def delete_slice(self, namespace: str, name: str, now: float) -> None:
        self._forget_slice((namespace, name), now)

    def _forget_slice(self, slice_id: tuple[str, str], now: float) -> None:
        key = self._slice_owner.pop(slice_id, None)
        if key is None:
            return
        slices = self._slices.get(key, {})
        slices.pop(slice_id[1], None)
        if not slices:
            self._slices.pop(key, None)
        self._touch(key, now)

    def _info(self, key: ServiceKey) -> ServiceInfo | None:
        parsed = self._services.get(key)
        if parsed is None or not parsed.ports:
            return None
        slices = self._slices.get(key, {})
        endpoints = tuple(endpoints_for(port, slices, self.node) for port in parsed.ports)
        return ServiceInfo(key, parsed.ports, endpoints)

    def take(self) -> Changes:
        """The current snapshot and what changed since the previous `take`."""
        changed: set[ServiceKey] = set()
        triggers: list[float] = []
        for key, when in self._dirty.items():
            info = self._info(key)
            if info == self._state.get(key):
                continue
            if info is None:
                del self._state[key]
            else:
                self._state[key] = info
            changed.add(key)
            triggers.append(when)
        self._dirty.clear()
        return Changes(Snapshot(self.node, dict(self._state)), frozenset(changed), tuple(sorted(triggers)))

    def snapshot(self) -> Snapshot:
        """The snapshot as of the last `take` (pending changes not applied)."""
        return Snapshot(self.node, dict(self._state))
