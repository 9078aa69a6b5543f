"""IPVS mode's rendering against exact expected operations and iptables rules (golden files in golden/ipvs/).

The Services are those of the iptables golden tests, so the modes can be read side by side. A full sync into
an empty kernel lists everything a Service becomes: virtual servers and real servers (as ipvsadm shows them),
addresses on kube-ipvs0 and ipset entries (as ipset shows them). Regenerate with `UPDATE_GOLDEN=1 pytest
tests/unit/dataplane` after an intended change, and review the diff.
"""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.ipvs.plan import GracePolicy, KernelView, Record, plan_full, plan_partial
from dataplane.ipvs.render import IpvsConfig, render_service
from dataplane.ipvs.rules import RulesConfig, render_rules, restore_input
from dataplane.model import ServiceKey
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service
from tests.unit.dataplane.test_iptables_golden import CASES, TWO_PODS, check, snapshot

NODE = IpvsConfig(
    families=(4,),
    nodeport_addresses=("192.168.10.11",),
    node_ips=("192.168.10.11",),
    local_addresses=("192.168.10.11",),
)
DUAL = IpvsConfig(
    families=(4, 6),
    scheduler="mh",
    nodeport_addresses=("192.168.10.11", "fd00:10::11"),
    node_ips=("192.168.10.11", "fd00:10::11"),
)
GRACE = GracePolicy(timeout=60.0, now=1000.0)


def full(objects: list[dict[str, Any]], config: IpvsConfig = NODE) -> str:
    services = {key: render_service(info, config) for key, info in snapshot(objects).services.items()}
    plan = plan_full(Record(), services, KernelView(), GRACE)
    assert not plan.conflicts
    return "\n".join(str(op) for op in plan.ops) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_sync(case):
    check(f"ipvs/{case}.ops", full(CASES[case]))


def test_dual_stack_with_the_mh_scheduler():
    objects = [
        service(
            cluster_ips=("10.96.0.10", "fd00:10:96::a"),
            type="LoadBalancer",
            ports=[
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "s", "protocol": "SCTP", "port": 9},
            ],
            ingress=[{"ip": "192.168.10.90"}, {"ip": "fd00:10::90"}],
            externalIPs=["192.168.10.11"],  # a node address: served, but never bound on kube-ipvs0
            loadBalancerSourceRanges=["192.168.10.0/24", "fd00:10::/64"],
        ),
        endpoint_slice(
            endpoints=TWO_PODS,
            ports=[{"name": "http", "port": 8080}, {"name": "s", "protocol": "SCTP", "port": 9}],
        ),
        endpoint_slice(
            name="web-v6",
            address_type="IPv6",
            endpoints=[endpoint("fd00:244:1::5"), endpoint("fd00:244:2::7", node="n2")],
            ports=[{"name": "http", "port": 8080}],
        ),
    ]
    check("ipvs/dual-stack-mh.ops", full(objects, DUAL))


@pytest.mark.parametrize("family", [4, 6])
def test_iptables_rules_are_a_constant_set(family):
    cidr = "10.244.0.0/16" if family == 4 else "fd00:244::/48"
    rules = render_rules(RulesConfig(family, (cidr,)))
    check(f"ipvs/rules-v{family}.rules", restore_input(rules, {}))
    # The same rules whatever the Services; the jumps into our chains are added once.
    present = {
        ("nat", "PREROUTING"): [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        ]
    }
    again = restore_input(rules, present)
    assert "-I PREROUTING" not in again and "-I OUTPUT" in again


def test_rules_without_pod_cidrs_masquerade_traffic_from_service_ips():
    rules = render_rules(RulesConfig(4))
    assert any("KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ" in r for r in rules["nat"]["KUBE-SERVICES"])
    assert rules["filter"]["KUBE-IPVS-NO-LOCAL"] == ["-m addrtype --src-type LOCAL -j RETURN", "-j DROP"]


def test_partial_sync_sends_only_the_difference_and_terminates_gracefully():
    tracker_objects = CASES["clusterip"] + [
        service(
            name="dns", cluster_ips=("10.96.0.53",), ports=[{"name": "dns", "protocol": "UDP", "port": 53}]
        ),
        endpoint_slice("dns", TWO_PODS, ports=[{"name": "dns", "protocol": "UDP", "port": 5353}]),
    ]
    before = snapshot(tracker_objects)
    record = Record()
    services = {key: render_service(info, NODE) for key, info in before.services.items()}
    plan_full(record, services, KernelView(), GRACE).commit()

    after = snapshot(
        [
            service(),
            endpoint_slice(endpoints=TWO_PODS[:1]),
            service(
                name="dns",
                cluster_ips=("10.96.0.53",),
                ports=[{"name": "dns", "protocol": "UDP", "port": 53}],
            ),
            endpoint_slice("dns", TWO_PODS[:1], ports=[{"name": "dns", "protocol": "UDP", "port": 5353}]),
        ]
    )
    keys = [ServiceKey("default", "web"), ServiceKey("default", "dns")]
    plan = plan_partial(record, {key: render_service(after.services[key], NODE) for key in keys}, GRACE)
    assert [str(op) for op in plan.ops] == [
        # TCP: no new connections for the endpoint that went away; its connections go on until they drain.
        "set TCP 10.96.0.10:80 -> 10.244.2.7:8080 masq weight 0",
        # UDP has no end of a connection: deleted at once (expire_nodest_conn reschedules the next datagram).
        "del UDP 10.96.0.53:53 -> 10.244.2.7:5353",
    ]
    plan.commit()
    web = next(vs for vs in record.kernel.virtual_servers if vs.protocol == "TCP")
    assert record.terminating == {
        (web, next(iter(r for r in record.kernel.dests[web] if r.ip == "10.244.2.7"))): 1060.0
    }

    # The endpoint comes back while terminating: weight 1 again, no longer terminating.
    plan = plan_partial(record, {keys[0]: render_service(before.services[keys[0]], NODE)}, GRACE)
    assert [str(op) for op in plan.ops] == ["set TCP 10.96.0.10:80 -> 10.244.2.7:8080 masq weight 1"]
    plan.commit()
    assert not record.terminating

    # The Service goes: its address stops being local before its entries and virtual server go.
    plan = plan_partial(record, {keys[1]: None}, GRACE)
    check("ipvs/partial-delete.ops", "\n".join(str(op) for op in plan.ops) + "\n")
