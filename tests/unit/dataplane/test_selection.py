"""Endpoint selection, as kube-proxy's CategorizeEndpoints (pkg/proxy/topology_test.go's cases, reduced)."""

import pytest

from dataplane.model import Endpoint, ServiceKey, ServicePort
from dataplane.selection import select

KEY = ServiceKey("ns", "svc")


def port(internal_local: bool = False, external_local: bool = False, node_port: int = 0) -> ServicePort:
    return ServicePort(
        service=KEY,
        port_name="",
        protocol="TCP",
        family=4,
        cluster_ip="10.96.0.1",
        port=80,
        node_port=node_port,
        internal_policy_local=internal_local,
        external_policy_local=external_local,
    )


def ep(
    ip: str, local: bool = False, ready: bool = True, serving: bool | None = None, terminating: bool = False
) -> Endpoint:
    return Endpoint(
        ip,
        80,
        ready=ready,
        serving=ready if serving is None else serving,
        terminating=terminating,
        local=local,
    )


READY_LOCAL = ep("10.0.0.1", local=True)
READY_REMOTE = ep("10.0.0.2")
TERM_LOCAL = ep("10.0.0.3", local=True, ready=False, serving=True, terminating=True)
TERM_REMOTE = ep("10.0.0.4", ready=False, serving=True, terminating=True)
NOT_SERVING_TERM = ep("10.0.0.5", ready=False, serving=False, terminating=True)
NOT_READY = ep("10.0.0.6", ready=False)


def ips(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [e.ip for e in endpoints]


@pytest.mark.parametrize(
    "service_port, endpoints, cluster, local, reachable, has_any, internal, external",
    [
        # Cluster policy: ready endpoints only.
        (
            port(),
            [READY_LOCAL, READY_REMOTE, NOT_READY],
            ["10.0.0.1", "10.0.0.2"],
            [],
            ["10.0.0.1", "10.0.0.2"],
            True,
            True,
            True,
        ),
        # No ready endpoint: serving-terminating ones (KEP-1669), never non-serving ones.
        (
            port(),
            [TERM_REMOTE, NOT_SERVING_TERM, NOT_READY],
            ["10.0.0.4"],
            [],
            ["10.0.0.4"],
            True,
            True,
            True,
        ),
        # Nothing usable at all.
        (port(), [NOT_SERVING_TERM, NOT_READY], [], [], [], False, False, False),
        (port(), [], [], [], [], False, False, False),
        # internalTrafficPolicy Local with a local endpoint.
        (
            port(internal_local=True),
            [READY_LOCAL, READY_REMOTE],
            [],
            ["10.0.0.1"],
            ["10.0.0.1"],
            True,
            True,
            True,
        ),
        # internalTrafficPolicy Local without one: dropped, though endpoints exist elsewhere.
        (port(internal_local=True), [READY_REMOTE], [], [], [], True, False, True),
        # Local falls back to local serving-terminating endpoints, independently of Cluster.
        (
            port(internal_local=True),
            [TERM_LOCAL, READY_REMOTE],
            [],
            ["10.0.0.3"],
            ["10.0.0.3"],
            True,
            True,
            True,
        ),
        # externalTrafficPolicy Local: Cluster list for internal traffic, Local list for external.
        (
            port(external_local=True, node_port=30000),
            [READY_LOCAL, READY_REMOTE],
            ["10.0.0.1", "10.0.0.2"],
            ["10.0.0.1"],
            ["10.0.0.1", "10.0.0.2"],
            True,
            True,
            True,
        ),
        (
            port(external_local=True, node_port=30000),
            [READY_REMOTE],
            ["10.0.0.2"],
            [],
            ["10.0.0.2"],
            True,
            True,
            False,
        ),
        # A local terminating endpoint serves external traffic while the Cluster list has ready remote ones.
        (
            port(external_local=True, node_port=30000),
            [TERM_LOCAL, READY_REMOTE],
            ["10.0.0.2"],
            ["10.0.0.3"],
            ["10.0.0.2", "10.0.0.3"],
            True,
            True,
            True,
        ),
    ],
)
def test_select(service_port, endpoints, cluster, local, reachable, has_any, internal, external):
    sel = select(service_port, tuple(endpoints))
    assert ips(sel.cluster) == cluster
    assert ips(sel.local) == local
    assert ips(sel.reachable) == reachable
    assert (sel.has_any, sel.has_internal, sel.has_external) == (has_any, internal, external)
