"""EndpointSlice and Endpoints rendering and reconciliation (pure)."""

from __future__ import annotations

from typing import Any

from lab.controllers import slices
from tests.unit.lab.helpers import node, pod, service

NODES = {"node1": node("node1", labels={"topology.kubernetes.io/zone": "z1"}), "node2": node("node2")}


def test_tutorial_service_gets_one_ipv4_slice() -> None:
    svc = service()
    pods = [
        pod("web-b", node_name="node2", ips=["10.244.2.2"]),
        pod("web-a", node_name="node1", ips=["10.244.1.2", "fd00:244:1::2"]),
        pod("other", labels={"app": "db"}, ips=["10.244.1.3"]),
        pod("no-ip"),
        pod("done", ips=["10.244.1.4"], phase="Succeeded"),
        pod("lost", node_name="node9", ips=["10.244.9.2"]),
        pod("elsewhere", ips=["10.244.1.5"], namespace="ns1"),
    ]
    [es] = slices.render_slices(svc, pods, NODES)
    assert es["apiVersion"] == "discovery.k8s.io/v1" and es["kind"] == "EndpointSlice"
    assert es["addressType"] == "IPv4"
    assert es["metadata"]["generateName"] == "nginx-svc-"
    assert es["metadata"]["labels"] == {
        "kubernetes.io/service-name": "nginx-svc",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    owner = es["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Service",
        "nginx-svc",
        "svc-uid",
        True,
    )
    assert es["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    assert es["endpoints"] == [
        {
            "addresses": ["10.244.1.2"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-a", "uid": "uid-web-a"},
            "nodeName": "node1",
            "zone": "z1",
        },
        {
            "addresses": ["10.244.2.2"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-b", "uid": "uid-web-b"},
            "nodeName": "node2",
        },
    ]


def test_conditions_for_not_ready_and_terminating_pods() -> None:
    pods = [
        pod("a", ips=["10.0.0.2"], ready=False),
        pod("b", ips=["10.0.0.3"], terminating=True),
        pod("c", ips=["10.0.0.4"], terminating=True, ready=False),
    ]
    [es] = slices.render_slices(service(), pods, NODES)
    conds = {e["targetRef"]["name"]: e["conditions"] for e in es["endpoints"]}
    assert conds == {
        "a": {"ready": False, "serving": False, "terminating": False},
        "b": {"ready": False, "serving": True, "terminating": True},
        "c": {"ready": False, "serving": False, "terminating": True},
    }
    [published] = slices.render_slices(service(publishNotReadyAddresses=True), pods, NODES)
    assert all(e["conditions"]["ready"] for e in published["endpoints"])


def test_dual_stack_headless_named_ports_group_pods() -> None:
    svc = service(
        clusterIP="None",
        ipFamilies=["IPv4", "IPv6"],
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web", "appProtocol": "http"}],
    )
    svc["metadata"]["labels"] = {"team": "a"}
    pods = [
        pod("a", ips=["10.0.0.2", "fd00::2"], ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", ips=["10.0.0.3", "fd00::3"], ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", ips=["10.0.0.4"], ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}]),
    ]
    rendered = slices.render_slices(svc, pods, NODES)
    summary = sorted(
        (
            s["addressType"],
            tuple(p["port"] for p in s["ports"]),
            tuple(e["addresses"][0] for e in s["endpoints"]),
        )
        for s in rendered
    )
    assert summary == [
        ("IPv4", (), ("10.0.0.4",)),  # its named port is UDP: no TCP port resolves
        ("IPv4", (8080,), ("10.0.0.2",)),
        ("IPv4", (9090,), ("10.0.0.3",)),
        ("IPv6", (8080,), ("fd00::2",)),
        ("IPv6", (9090,), ("fd00::3",)),
    ]
    assert rendered[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert rendered[0]["metadata"]["labels"]["team"] == "a"
    port = next(s for s in rendered if s["ports"])["ports"][0]
    assert port == {"name": "http", "port": port["port"], "protocol": "TCP", "appProtocol": "http"}


def test_placeholder_slice_and_chunking() -> None:
    [placeholder] = slices.render_slices(service(), [], NODES)
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    many = [pod(f"p{i:03d}", ips=[f"10.1.{i // 200}.{i % 200 + 2}"]) for i in range(250)]
    chunks = slices.render_slices(service(), many, NODES)
    assert [len(s["endpoints"]) for s in chunks] == [100, 100, 50]


def existing(obj: dict[str, Any], name: str, rv: str = "7") -> dict[str, Any]:
    copy = {**obj, "metadata": {**obj["metadata"], "name": name, "resourceVersion": rv}}
    copy["metadata"].pop("generateName")
    return copy


def test_reconcile_creates_updates_in_place_and_deletes() -> None:
    svc = service()
    one = slices.render_slices(svc, [pod("a", ips=["10.0.0.2"])], NODES)
    first = slices.reconcile_slices(one, [])
    assert len(first.create) == 1 and not first.update and not first.delete
    current = [existing(one[0], "nginx-svc-abcde")]
    assert not slices.reconcile_slices(one, current)  # nothing to do
    two = slices.render_slices(svc, [pod("a", ips=["10.0.0.2"]), pod("b", ips=["10.0.0.3"])], NODES)
    changes = slices.reconcile_slices(two, current)
    assert not changes.create and not changes.delete
    [updated] = changes.update
    assert updated["metadata"]["name"] == "nginx-svc-abcde" and updated["metadata"]["resourceVersion"] == "7"
    assert len(updated["endpoints"]) == 2
    # A port change reuses the slice; a surplus slice is deleted.
    svc2 = service(ports=[{"protocol": "TCP", "port": 80, "targetPort": 8080}])
    moved = slices.render_slices(svc2, [pod("a", ips=["10.0.0.2"])], NODES)
    changes = slices.reconcile_slices(moved, [*current, existing(one[0], "nginx-svc-zzzzz")])
    assert [u["metadata"]["name"] for u in changes.update] == ["nginx-svc-abcde"]
    assert changes.update[0]["ports"][0]["port"] == 8080
    assert changes.delete == ["nginx-svc-zzzzz"]


def test_legacy_endpoints() -> None:
    pods = [
        pod("a", node_name="node1", ips=["10.0.0.9", "fd00::9"]),
        pod("b", node_name="node2", ips=["10.0.0.3"], ready=False),
        pod("c", ips=["10.0.0.4"], terminating=True),
    ]
    ep = slices.render_endpoints(service(), pods, NODES)
    assert ep["metadata"] == {"name": "nginx-svc", "namespace": "default"}
    assert ep["subsets"] == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.9",
                    "nodeName": "node1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
                },
            ],
            "notReadyAddresses": [
                {
                    "ip": "10.0.0.3",
                    "nodeName": "node2",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"},
                },
            ],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }
    ]
    empty = slices.render_endpoints(service(), [], NODES)
    assert "subsets" not in empty
    assert slices.endpoints_changed(ep, empty) and not slices.endpoints_changed(ep, ep)
    assert slices.endpoints_changed(None, empty)


def test_which_services_are_managed() -> None:
    assert slices.manages(service())
    assert not slices.manages(service(selector={}))
    assert not slices.manages(service(type="ExternalName"))
