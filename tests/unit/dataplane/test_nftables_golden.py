"""The nftables renderer against exact expected nft input (golden files in golden/nftables/).

The Services are those of the iptables golden tests, so the two modes' outputs can be read side by side.
After an intended change, regenerate with `UPDATE_GOLDEN=1 pytest tests/unit/dataplane` and review the diff:
these files are what a user sees in `nft list table ip ironlb`.
"""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.backend import RenderConfig
from dataplane.model import ServiceKey
from dataplane.nftables.transaction import KernelObjects, Record, plan_full, plan_partial
from dataplane.tracker import ChangeTracker
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service
from tests.unit.dataplane.test_iptables_golden import CASES, TWO_PODS, check, snapshot

NODE_V4 = RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",))
NODE_V6 = RenderConfig(family=6, local_cidrs=("fd00:244::/48",), node_ips=("fd00:10::11",))


def full(
    objects: list[dict[str, Any]], config: RenderConfig = NODE_V4, existing: KernelObjects | None = None
) -> str:
    return plan_full(Record(), config, snapshot(objects).services, existing).text


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_sync(case):
    check(f"nftables/{case}.nft", full(CASES[case]))


def test_ipv6_dual_stack_service():
    objects = [
        service(
            cluster_ips=("10.96.0.10", "fd00:10:96::a"),
            type="NodePort",
            ports=[{"name": "http", "port": 80, "nodePort": 30080}],
        ),
        endpoint_slice(endpoints=TWO_PODS),
        endpoint_slice(
            name="web-v6",
            address_type="IPv6",
            endpoints=[endpoint("fd00:244:1::5"), endpoint("fd00:244:2::7", node="n2")],
        ),
    ]
    check("nftables/ipv6.nft", full(objects, NODE_V6))


def test_nodeport_addresses_without_comments():
    config = RenderConfig(family=4, nodeport_ips=("192.168.10.11",), comments=False, random_fully=False)
    objects = [
        service(name="np", type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
        endpoint_slice("np", [endpoint("10.244.1.3")]),
    ]
    check("nftables/nodeport-addresses.nft", full(objects, config))


def test_full_sync_over_an_existing_table_clears_it_first():
    existing = KernelObjects(
        chains=frozenset({"services", "endpoints-2", "endpoints-9", "service-OLD-default/gone/tcp/http"}),
        sets=frozenset({"affinity-OLD-default/gone/tcp/http__10.244.1.9/80", "hairpin"}),
        maps=frozenset({"service-ips", "endpoints"}),
    )
    text = full(CASES["clusterip"], existing=existing)
    preamble = text[: text.index("table ip ironlb {")]
    check("nftables/existing-table.nft", preamble)
    assert "delete chain ip ironlb endpoints-2" not in preamble  # still wanted


def test_partial_sync_sends_only_the_changed_services():
    objects = CASES["clusterip"] + [
        service(name="other", cluster_ips=("10.96.0.20",)),
        endpoint_slice("other", TWO_PODS),
        service(
            name="sticky",
            cluster_ips=("10.96.0.30",),
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
        endpoint_slice("sticky", TWO_PODS),
    ]
    tracker = ChangeTracker("node1")
    for obj in objects:
        (tracker.update_slice if "addressType" in obj else tracker.update_service)(obj, 0.0)
    record = Record()
    plan_full(record, NODE_V4, tracker.take().snapshot.services, None).commit()
    # web loses a pod and gains one; other is deleted; sticky loses a pod; new appears without endpoints.
    tracker.update_slice(
        endpoint_slice(endpoints=[endpoint("10.244.1.5"), endpoint("10.244.3.9", node="node3")]), 1.0
    )
    tracker.delete_service("default", "other", 1.0)
    tracker.update_slice(endpoint_slice("sticky", TWO_PODS[:1]), 1.0)
    tracker.update_service(service(name="new", cluster_ips=("10.96.0.40",)), 1.0)
    changes = tracker.take()
    updates = {key: changes.snapshot.services.get(key) for key in changes.changed}
    plan = plan_partial(record, updates)
    check("nftables/partial.nft", plan.text)
    plan.commit()
    assert ServiceKey("default", "other") not in record.services
    assert plan_partial(record, updates).text == ""  # applied: nothing left to do
