"""The sync loop with a recording backend: when it syncs fully or partially, and what it reports."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from prometheus_client import CollectorRegistry

from dataplane.backend import NodeNetwork, SyncError, SyncReport
from dataplane.metrics import Metrics
from dataplane.model import ServiceKey
from dataplane.sync import LoopOptions, SyncLoop
from dataplane.tracker import ChangeTracker, Snapshot
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service

WEB = ServiceKey("default", "web")


class FakeBackend:
    mode = "fake"

    def __init__(self) -> None:
        self.calls: list[frozenset[ServiceKey] | None] = []
        self.fail = False
        self.is_flushed = False
        self.nodes: list[NodeNetwork] = []

    def sync(self, snapshot: Snapshot, changed: Set[ServiceKey] | None) -> SyncReport:
        self.calls.append(None if changed is None else frozenset(changed))
        if self.fail:
            raise SyncError("boom")
        return SyncReport(full=changed is None, services=len(snapshot.services))

    def set_node(self, node: NodeNetwork) -> None:
        self.nodes.append(node)

    def flushed(self) -> bool:
        return self.is_flushed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**options: Any) -> tuple[SyncLoop, FakeBackend, list[float], list[tuple[str, str]], Clock]:
    backend = FakeBackend()
    retries: list[float] = []
    problems: list[tuple[str, str]] = []
    clock = Clock()
    loop = SyncLoop(
        ChangeTracker("node1"),
        backend,
        Metrics(CollectorRegistry()),
        node_source=lambda: NodeNetwork("node1"),
        retry=retries.append,
        report_problem=lambda kind, obj, text: problems.append((kind, text)),
        options=LoopOptions(flush_conntrack=False, **options),
        clock=clock,
        wall_clock=clock,
    )
    return loop, backend, retries, problems, clock


def test_nothing_before_the_first_lists_then_full_then_partial() -> None:
    loop, backend, _, _, _ = make()
    loop.on_service("ADDED", service())
    loop.sync()
    assert backend.calls == []  # the informers have not listed everything yet
    loop.source_synced("services")
    loop.source_synced("endpointslices")
    loop.sync()
    assert backend.calls == [None]
    loop.on_slice("ADDED", endpoint_slice(endpoints=[endpoint("10.244.1.5")]))
    loop.sync()
    assert backend.calls == [None, frozenset({WEB})]
    loop.sync()  # periodic: nothing changed, nothing written
    assert len(backend.calls) == 2


def test_a_failure_retries_with_a_full_sync_and_health_follows() -> None:
    loop, backend, retries, _, clock = make(health_timeout=60.0)
    loop.source_synced("services")
    loop.source_synced("endpointslices")
    loop.sync()
    backend.fail = True
    loop.on_service("ADDED", service())
    loop.sync()
    assert retries == [1.0] and backend.calls[-1] == frozenset({WEB})
    clock.now += 61
    assert not loop.healthy() and loop.health_check() is not None
    backend.fail = False
    loop.sync()
    assert backend.calls[-2:] == [frozenset({WEB}), None]  # after a failure: everything again
    assert loop.healthy()


def test_a_flush_behind_our_back_means_a_full_sync() -> None:
    loop, backend, _, _, _ = make()
    loop.source_synced("services")
    loop.source_synced("endpointslices")
    loop.sync()
    backend.is_flushed = True
    loop.sync()
    assert backend.calls == [None, None]


def test_bad_fields_are_reported_once() -> None:
    loop, _, _, problems, _ = make()
    bad = service(externalIPs=["nope"])
    loop.on_service("ADDED", bad)
    loop.on_service("MODIFIED", bad)
    assert problems == [("Service", "spec.externalIPs[0]: 'nope' is not an IP address")]
