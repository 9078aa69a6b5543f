"""The iptables renderer against exact expected iptables-restore input (golden files in golden/).

After an intended change to the rules, regenerate with `UPDATE_GOLDEN=1 pytest tests/unit/dataplane` and
review the diff: these files are what a user sees in `iptables-save`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dataplane.backend import RenderConfig
from dataplane.iptables.restore import Record, apply_partial, full_restore, partial_restore
from dataplane.iptables.rules import JUMPS, render_service, render_static
from dataplane.model import ServiceKey
from dataplane.tracker import ChangeTracker, Snapshot
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service

GOLDEN = Path(__file__).parent / "golden"
NODE_V4 = RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",))
NODE_V6 = RenderConfig(family=6, local_cidrs=("fd00:244::/48",), node_ips=("fd00:10::11",))


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; UPDATE_GOLDEN=1 to regenerate, then review the diff"


def snapshot(objects: list[dict[str, Any]], node: str = "node1") -> Snapshot:
    tracker = ChangeTracker(node)
    for obj in objects:
        if "addressType" in obj:
            tracker.update_slice(obj, 0.0)
        else:
            tracker.update_service(obj, 0.0)
    return tracker.take().snapshot


def full(objects: list[dict[str, Any]], config: RenderConfig = NODE_V4, **kwargs: Any) -> str:
    snap = snapshot(objects)
    rendered = {key: render_service(info, config) for key, info in snap.services.items()}
    return full_restore(render_static(config), rendered, missing_jumps=JUMPS, **kwargs)


TWO_PODS = [endpoint("10.244.1.5"), endpoint("10.244.2.7", node="node2")]

CASES = {
    "clusterip": [service(), endpoint_slice(endpoints=TWO_PODS)],
    "no-endpoints": [service(type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])],
    "nodeport-udp-affinity": [
        service(
            name="dns",
            type="NodePort",
            ports=[{"name": "dns", "protocol": "UDP", "port": 53, "nodePort": 30053}],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
        endpoint_slice("dns", TWO_PODS, ports=[{"name": "dns", "protocol": "UDP", "port": 5353}]),
    ],
    "loadbalancer-local-firewall": [
        service(
            type="LoadBalancer",
            ports=[{"name": "http", "port": 80, "nodePort": 30080}],
            ingress=[{"ip": "192.168.10.90", "ipMode": "VIP"}],
            externalTrafficPolicy="Local",
            healthCheckNodePort=32000,
            loadBalancerSourceRanges=["192.168.10.0/24"],
        ),
        endpoint_slice(endpoints=TWO_PODS),
    ],
    "local-policies-without-local-endpoints": [
        service(
            type="LoadBalancer",
            ports=[{"name": "http", "port": 80, "nodePort": 30080}],
            ingress=[{"ip": "192.168.10.90"}],
            externalIPs=["192.0.2.10"],
            externalTrafficPolicy="Local",
            internalTrafficPolicy="Local",
        ),
        endpoint_slice(endpoints=[endpoint("10.244.2.7", node="node2")]),
    ],
    "terminating-fallback": [
        service(),
        endpoint_slice(
            endpoints=[
                endpoint("10.244.1.5", ready=False, serving=True, terminating=True),
                endpoint("10.244.2.7", ready=False, serving=False, terminating=True),
            ]
        ),
    ],
    "headless-and-externalname": [
        service(name="headless", cluster_ips=("None",)),
        endpoint_slice("headless", TWO_PODS),
        service(name="alias", type="ExternalName", cluster_ips=(), externalName="example.com"),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_restore(case):
    check(f"{case}.rules", full(CASES[case]))


def test_ipv6():
    objects = [
        service(
            cluster_ips=("fd00:10:96::a",),
            type="NodePort",
            ports=[{"name": "http", "port": 80, "nodePort": 30080}],
        ),
        endpoint_slice(
            address_type="IPv6", endpoints=[endpoint("fd00:244:1::5"), endpoint("fd00:244:2::7", node="n2")]
        ),
    ]
    check("ipv6.rules", full(objects, NODE_V6))


def test_nodeport_addresses_and_transactions():
    config = RenderConfig(family=4, nodeport_ips=("192.168.10.11",), comments=False, random_fully=False)
    objects = [service(name=f"s{i}", cluster_ips=(f"10.96.0.{i}",)) for i in range(1, 4)] + [
        endpoint_slice(f"s{i}", [endpoint(f"10.244.1.{i}")]) for i in range(1, 4)
    ]
    check("nodeport-addresses-two-per-transaction.rules", full(objects, config, services_per_transaction=2))


def test_partial_restore_edits_only_the_changed_service():
    objects = CASES["clusterip"] + [
        service(name="other", cluster_ips=("10.96.0.20",)),
        endpoint_slice("other", TWO_PODS),
    ]
    tracker = ChangeTracker("node1")
    for obj in objects:
        (tracker.update_slice if "addressType" in obj else tracker.update_service)(obj, 0.0)
    snap = tracker.take().snapshot
    record = Record()
    record.reset(render_static(NODE_V4), {k: render_service(v, NODE_V4) for k, v in snap.services.items()})
    # web loses a pod and gains one; other is deleted; new appears without endpoints.
    tracker.update_slice(
        endpoint_slice(endpoints=[endpoint("10.244.1.5"), endpoint("10.244.3.9", node="node3")]), 1.0
    )
    tracker.delete_service("default", "other", 1.0)
    tracker.update_service(service(name="new", cluster_ips=("10.96.0.30",)), 1.0)
    changes = tracker.take()
    updates = {
        key: render_service(changes.snapshot.services[key], NODE_V4)
        if key in changes.snapshot.services
        else None
        for key in changes.changed
    }
    text = partial_restore(record, updates)
    check("partial.rules", text)
    apply_partial(record, updates)
    assert ServiceKey("default", "other") not in record.services
    assert partial_restore(record, updates) == ""  # applied: nothing left to do


@pytest.mark.parametrize(
    ("namespace", "name", "port", "protocol", "chain"),
    [
        # Chain names every kube-proxy cluster has, as `iptables-save` shows them there.
        ("default", "kubernetes", "https", "TCP", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
        ("kube-system", "kube-dns", "dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
        ("kube-system", "kube-dns", "dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),
        ("kube-system", "kube-dns", "metrics", "TCP", "KUBE-SVC-JD5MR3NA4I4DYORP"),
    ],
)
def test_chain_names_are_kube_proxys(namespace: str, name: str, port: str, protocol: str, chain: str) -> None:
    from dataplane.iptables.rules import chain_base
    from dataplane.model import ServicePort

    service_port = ServicePort(ServiceKey(namespace, name), port, protocol, 4, "10.96.0.1", 443)
    assert f"KUBE-SVC-{chain_base(service_port)}" == chain
