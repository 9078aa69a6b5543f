"""Announcing in the lab (root): the tutorial's Service answered by exactly one node, the one kubectl shows;
IPv6 and dual-stack; shared IPs; the node filters; a pool that shrinks; conflicts; bad advertisements and
interfaces that come and go."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from k8s.client import Client
from tests.controller.helpers import apply, events, service, wait_event, wait_for, wait_ips
from tests.lab.conftest import ns_run
from tests.speaker.helpers import NODES, SpeakerLab, deployment
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

DUAL_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: dual, namespace: metallb-system, labels: {family: dual}}
spec:
  addresses: [192.168.10.80-192.168.10.89, fd00:10::80-fd00:10::8f]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: dual, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {family: dual}}]
"""


def test_tutorial_service_is_answered_by_exactly_the_node_kubectl_shows(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    apply(kubectl, TUTORIAL_DIR / "nginx-metallb.yaml", namespace="default")
    assert wait_ips(kubectl, "nginx-metallb", timeout=30) == ["192.168.10.90"]
    nodes = wait_for("a ServiceL2Status", lambda: speaker_lab.status_nodes("nginx-metallb"), timeout=30)
    assert len(nodes) == 1 and nodes[0] in NODES
    macs = wait_for("an ARP answer", lambda: speaker_lab.arping("192.168.10.90"), timeout=20)
    assert macs == [speaker_lab.mac(nodes[0])], speaker_lab.speaker_log()
    # What kubectl shows, as MetalLB 0.14 shows it.
    table = kubectl("get", "servicel2status", "-A").stdout.splitlines()
    assert table[0].split() == [
        "NAMESPACE",
        "NAME",
        "ALLOCATED",
        "NODE",
        "SERVICE",
        "NAME",
        "SERVICE",
        "NAMESPACE",
    ]
    status = json.loads(kubectl("get", "servicel2status", "-A", "-o", "json").stdout)["items"][0]
    assert status["status"] == {
        "node": nodes[0],
        "serviceName": "nginx-metallb",
        "serviceNamespace": "default",
        "interfaces": [{"name": "eth1"}],
    }
    assert status["metadata"]["name"].startswith("l2-")
    event = wait_event(kubectl, "nginx-metallb", "nodeAssigned", timeout=10)
    assert event["message"] == f'announcing from node "{nodes[0]}" with protocol "layer2"'
    assert event["source"]["component"] == "metallb-speaker"
    # The others never answer, and the owner counts what it did under MetalLB's metric names (bare, as its Go
    # client exposes them: no _total).
    owner = speaker_lab.speakers[nodes[0]]

    def counted() -> dict[str, float] | None:
        samples = owner.metrics()
        return samples if samples.get('metallb_layer2_responses_sent{ip="192.168.10.90"}') else None

    samples = wait_for("owner metrics", counted)
    assert samples['metallb_layer2_requests_received{ip="192.168.10.90"}'] >= 1
    assert samples['metallb_layer2_gratuitous_sent{ip="192.168.10.90"}'] >= 1
    labels = f'ip="192.168.10.90",node="{nodes[0]}",protocol="layer2",service="default/nginx-metallb"'
    assert samples[f"metallb_speaker_announced{{{labels}}}"] == 1
    for other in set(NODES) - {nodes[0]}:
        assert (
            not speaker_lab.speakers[other].metrics().get('metallb_layer2_responses_sent{ip="192.168.10.90"}')
        )
    # Never on an interface: the kernel of no node holds the IP.
    for node in NODES:
        assert "192.168.10.90" not in ns_run(speaker_lab.netns(node), "ip", "-o", "addr").stdout


def one_mac(speaker_lab: SpeakerLab, ip: str, what: str = "", timeout: float = 20) -> str:
    """Wait until exactly one MAC answers ARP (or NDP) for ``ip``; the node it belongs to."""
    probe = speaker_lab.ndisc6 if ":" in ip else speaker_lab.arping

    def single() -> list[str] | None:
        macs = probe(ip)
        return macs if len(macs) == 1 else None

    return speaker_lab.node_of(wait_for(f"one answer for {ip} {what}", single, timeout)[0])


def moved_away(speaker_lab: SpeakerLab, ip: str, *before: str) -> str:
    """Wait until one node answers for ``ip`` and it is none of ``before``."""

    def elsewhere() -> str | None:
        owner = speaker_lab.owner_by_arp(ip)
        return owner if owner is not None and owner not in before else None

    return wait_for(f"{ip} to move away from {', '.join(before)}", elsewhere, timeout=20)


def test_ipv6_and_dual_stack_service(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    apply(kubectl, DUAL_POOL)
    apply(kubectl, deployment("dual"))
    annotations = {"metallb.io/loadBalancerIPs": "192.168.10.80,fd00:10::80"}
    apply(
        kubectl,
        service(
            "dual", annotations=annotations, ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"]
        ),
    )
    assert sorted(wait_ips(kubectl, "dual", timeout=30)) == ["192.168.10.80", "fd00:10::80"]
    v4_owner = one_mac(speaker_lab, "192.168.10.80")
    v6_owner = one_mac(speaker_lab, "fd00:10::80")
    # The owner joined the IP's solicited-node group (so a NIC's filter and MLD-snooping switches let the
    # NS through); no other node did. The nodes' own addresses (fd00:10::1x) have groups of their own.
    for node in NODES:
        groups = ns_run(speaker_lab.netns(node), "ip", "-6", "maddr", "show", "dev", "eth1").stdout
        assert ("ff02::1:ff00:80" in groups) == (node == v6_owner), (node, groups)
    # Keyed by IP: each family has its own owner, and kubectl shows every announcing node.
    wait_for(
        "statuses of both owners", lambda: speaker_lab.status_nodes("dual") == sorted({v4_owner, v6_owner})
    )
    wait_event(kubectl, "dual", "nodeAssigned")


def test_two_services_sharing_an_ip_are_announced_by_one_node(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    shared = {"metallb.io/allow-shared-ip": "web", "metallb.io/loadBalancerIPs": "192.168.10.99"}
    apply(kubectl, deployment("share"))
    for name, port in (("share-a", 80), ("share-b", 81)):
        apply(kubectl, service(name, annotations=shared, ports=((port, "TCP"),), selector={"app": "share"}))
    for name in ("share-a", "share-b"):
        assert wait_ips(kubectl, name, timeout=30) == ["192.168.10.99"]
    owner = one_mac(speaker_lab, "192.168.10.99")
    for name in ("share-a", "share-b"):
        speaker_lab.wait_status(name, [owner])
        wait_event(kubectl, name, "nodeAssigned", contains=f'"{owner}"')


def set_network_unavailable(speaker_lab: SpeakerLab, node: str, unavailable: bool) -> None:
    kubectl = speaker_lab.kubectl
    conditions = json.loads(kubectl("get", "node", node, "-o", "json").stdout)["status"]["conditions"]
    conditions = [c for c in conditions if c["type"] != "NetworkUnavailable"]
    reason = "NoRouteCreated" if unavailable else "RouteCreated"
    status = "True" if unavailable else "False"
    conditions.append({"type": "NetworkUnavailable", "status": status, "reason": reason, "message": "a test"})
    patch = json.dumps({"status": {"conditions": conditions}})
    kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", patch)


def test_exclude_label_and_network_unavailable_are_honoured(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    label = "node.kubernetes.io/exclude-from-external-load-balancers"
    apply(kubectl, deployment("filters"))
    apply(kubectl, service("filters", annotations={"metallb.io/loadBalancerIPs": "192.168.10.97"}))
    first = one_mac(speaker_lab, "192.168.10.97")
    second = third = ""
    try:
        kubectl("label", "node", first, f"{label}=")
        second = moved_away(speaker_lab, "192.168.10.97", first)
        set_network_unavailable(speaker_lab, second, True)
        third = moved_away(speaker_lab, "192.168.10.97", first, second)
        assert speaker_lab.status_nodes("filters") == [third]
    finally:
        kubectl("label", "node", first, f"{label}-", check=False)
        if second:
            set_network_unavailable(speaker_lab, second, False)
    assert one_mac(speaker_lab, "192.168.10.97", "after the filters are lifted") == first


def test_an_ip_that_leaves_the_pool_stops_being_answered(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    apply(kubectl, deployment("shrink"))
    apply(kubectl, service("shrink", annotations={"metallb.io/loadBalancerIPs": "192.168.10.98"}))
    assert wait_ips(kubectl, "shrink", timeout=30) == ["192.168.10.98"]
    one_mac(speaker_lab, "192.168.10.98")
    smaller = (TUTORIAL_DIR / "metallb-config.yaml").read_text().replace("192.168.10.100", "192.168.10.97")
    try:
        apply(kubectl, smaller)
        wait_for("no answer for the IP out of the pool", lambda: speaker_lab.arping("192.168.10.98") == [])
        assert len(speaker_lab.arping("192.168.10.90")) == 1, "the rest of the pool is still announced"
    finally:
        apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
        kubectl("delete", "service", "shrink", check=False)


def test_another_host_answering_for_a_pool_ip_is_a_warning(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    client_mac = json.loads(ns_run(speaker_lab.client, "ip", "-j", "link", "show", "eth1").stdout)[0][
        "address"
    ]
    # Someone configured a pool address by hand on a host of the segment: its kernel answers ARP for it.
    ns_run(speaker_lab.client, "ip", "addr", "add", "192.168.10.96/32", "dev", "eth1", check=True)
    try:
        apply(kubectl, deployment("clash"))
        apply(kubectl, service("clash", annotations={"metallb.io/loadBalancerIPs": "192.168.10.96"}))
        event = wait_event(kubectl, "clash", "IPConflict", timeout=30)
        assert event["type"] == "Warning" and client_mac in event["message"], event
        owner = wait_for("clash status", lambda: speaker_lab.status_nodes("clash"))[0]
        samples = speaker_lab.speakers[owner].metrics()
        assert samples['ironlb_layer2_address_conflicts_total{interface="eth1",ip="192.168.10.96"}'] >= 1
        # The pool owner decided: the speaker goes on announcing (the log says so).
        assert "event=ip_conflict ip=192.168.10.96" in speaker_lab.speakers[owner].log()
        assert speaker_lab.speakers[owner].metrics()['metallb_layer2_gratuitous_sent{ip="192.168.10.96"}']
    finally:
        ns_run(speaker_lab.client, "ip", "addr", "del", "192.168.10.96/32", "dev", "eth1")


EXTRA_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: extra, namespace: metallb-system}
spec:
  addresses: [192.168.10.70-192.168.10.79]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: extra, namespace: metallb-system}
spec:
  ipAddressPools: [extra]
  interfaces: [eth1, eth9, lan2]
"""

BROKEN = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: broken, namespace: metallb-system}
spec:
  ipAddressPools: [extra]
  nodeSelectors: [{matchExpressions: [{key: kubernetes.io/hostname, operator: Bogus}]}]
"""


def test_bad_advertisements_and_interfaces_that_come_and_go(speaker_lab: SpeakerLab) -> None:
    kubectl = speaker_lab.kubectl
    apply(kubectl, EXTRA_POOL)
    apply(kubectl, deployment("extra"))
    apply(kubectl, service("extra", annotations={"metallb.io/address-pool": "extra"}))
    ip = wait_ips(kubectl, "extra", timeout=30)[0]
    owner = one_mac(speaker_lab, ip)
    # eth9 exists nowhere: a Warning on the L2Advertisement from the owner, announced on eth1 all the same.
    warning = wait_event(kubectl, "extra", "InterfaceNotFound", namespace="metallb-system", contains="eth9")
    assert warning["type"] == "Warning" and f"node {owner!r}" in warning["message"]
    assert "event=problem kind=L2Advertisement" in speaker_lab.speakers[owner].log()
    # A second interface appears on the owner: the IP is announced there too. It goes: a log line, no crash.
    netns = speaker_lab.netns(owner)
    ns_run(netns, "ip", "link", "add", "lan2", "type", "veth", "peer", "name", "lan2p", check=True)
    try:
        ns_run(netns, "ip", "link", "set", "lan2p", "up", check=True)
        ns_run(netns, "ip", "link", "set", "lan2", "up", check=True)
        jsonpath = "jsonpath={.items[*].status.interfaces[*].name}"
        listed = lambda: "lan2" in kubectl("get", "servicel2status", "-A", "-o", jsonpath).stdout  # noqa: E731
        wait_for("the status to list lan2", listed)
    finally:
        ns_run(netns, "ip", "link", "del", "lan2")
    wait_for("removal noticed", lambda: "removed=lan2" in speaker_lab.speakers[owner].log(), timeout=10)
    assert speaker_lab.speakers[owner].alive()
    assert one_mac(speaker_lab, ip, "after lan2 went away") == owner
    # The owner's speaker starts while its advertisement names interfaces it lacks (eth9, lan2): a log line
    # naming the object and the field, no crash, and the IP announced on eth1 again.
    speaker_lab.speakers[owner].stop()
    speaker_lab.speakers[owner].start()
    wait_for("the owner answering again", lambda: speaker_lab.owner_by_arp(ip) == owner, timeout=30)
    log = speaker_lab.speakers[owner].log()
    for missing in ("eth9", "lan2"):
        line = f"spec.interfaces: interface '{missing}' does not exist on node '{owner}'"
        assert (
            f'kind=L2Advertisement object=metallb-system/extra reason=InterfaceNotFound message="{line}'
            in log
        )
    # A bad selector: a Warning and a log line from the speakers; every other advertisement keeps working.
    apply(kubectl, BROKEN)
    try:
        # The controller reports it too (it rejects the whole configuration); this is the speakers' own.
        def from_speakers() -> list[dict[str, Any]]:
            found = events(kubectl, "broken", namespace="metallb-system", reason="InvalidConfig")
            return [
                e for e in found if e["source"]["component"] == "metallb-speaker" and "Bogus" in e["message"]
            ]

        event = wait_for("the speakers' InvalidConfig event", from_speakers)[0]
        assert event["type"] == "Warning" and "ignores it" in event["message"], event
        field = "spec.nodeSelectors[0].matchExpressions[0].operator"
        assert field in event["message"], event
        log = speaker_lab.speakers[owner].log()
        assert "event=invalid_l2advertisement object=metallb-system/broken" in log and field in log
        assert one_mac(speaker_lab, ip, "with a broken advertisement around") == owner
        assert len(speaker_lab.arping("192.168.10.90")) == 1
        assert all(s.alive() for s in speaker_lab.speakers.values())
    finally:
        kubectl("delete", "l2advertisement", "broken", "-n", "metallb-system", check=False)
    assert not events(kubectl, "extra", reason="announceFailed")


MANY_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: many, namespace: metallb-system}
spec:
  addresses: [192.168.10.160-192.168.10.199]  # below the client (.200)
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: many, namespace: metallb-system}
spec:
  ipAddressPools: [many]
"""


def speaker_writes(speaker_lab: SpeakerLab, seconds: int) -> dict[str, int]:
    """What the speakers write to the API in the next ``seconds``: Lease updates, ServiceL2Status writes and
    Events from the speakers, counted from watches that start now."""
    client = Client.load(str(speaker_lab.lab.paths.kubeconfig))
    paths = {
        "lease": "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases",
        "servicel2status": "/apis/metallb.io/v1beta1/servicel2statuses",
        "event": "/api/v1/events",
    }
    counts = dict.fromkeys(paths, 0)
    watches = {
        kind: client.watch(
            path, client.get(path)["metadata"]["resourceVersion"], timeout_seconds=seconds, bookmarks=False
        )
        for kind, path in paths.items()
    }

    def count(kind: str) -> None:
        for change in watches[kind]:
            obj = change["object"]
            if kind == "lease" and not obj["metadata"]["name"].startswith("ironlb-speaker-"):
                continue
            if kind == "event" and (obj.get("source") or {}).get("component") != "metallb-speaker":
                continue
            counts[kind] += 1

    try:
        with ThreadPoolExecutor(len(paths)) as pool:
            list(pool.map(count, paths))
    finally:
        for watch in watches.values():
            watch.close()
        client.close()
    return counts


def test_api_writes_in_a_steady_state_do_not_grow_with_services(speaker_lab: SpeakerLab) -> None:
    """Liveness writes one Lease per speaker; while nothing changes, nothing is written per Service."""
    kubectl = speaker_lab.kubectl
    apply(kubectl, MANY_POOL)
    apply(kubectl, deployment("many"))
    names = [f"many-{index:02d}" for index in range(30)]
    services = [
        service(name, annotations={"metallb.io/address-pool": "many"}, selector={"app": "many"})
        for name in names
    ]
    apply(kubectl, "\n---\n".join(services))
    try:

        def not_shown() -> list[str]:
            shown = kubectl("get", "servicel2status", "-A", "--no-headers").stdout
            return [name for name in names if f" {name} " not in shown]

        try:
            wait_for("a ServiceL2Status for every Service", lambda: not not_shown(), timeout=90)
        except AssertionError as timeout:
            missing = not_shown()
            table = kubectl("get", "service", *missing, "-o", "wide", check=False).stdout
            raise AssertionError(f"{timeout}\n{table}\n{speaker_lab.speaker_log()}") from None
        seconds = 6
        writes = speaker_writes(speaker_lab, seconds)
        # Leases renew once a second at this size (docs/speaker.md): 3 speakers, a margin of two each.
        assert 0 < writes["lease"] <= len(NODES) * (seconds + 2), writes
        assert writes["servicel2status"] == 0 and writes["event"] == 0, writes
    finally:
        kubectl("delete", "service", *names, "--wait=false", check=False)
