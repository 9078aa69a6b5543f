"""Unit tests of lab.apiserver.admission and lab.apiserver.services (pure, no server)."""

from __future__ import annotations

import copy
import ipaddress
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.apiserver.admission import Admission
from lab.apiserver.errors import ApiError


def svc(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def tcp(port: int, **extra: Any) -> dict[str, Any]:
    return {"port": port, **extra}


@pytest.fixture
def adm() -> Admission:
    return Admission(seed=1)


def create(adm: Admission, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    return adm.create("", "services", obj, dry_run)


def invalid_message(adm: Admission, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as info:
        create(adm, obj)
    assert info.value.code == 422
    assert info.value.reason == "Invalid"
    return info.value.message


def node_ports_used(adm: Admission) -> set[int]:
    return set(adm.services.node_ports.used)


def ips_used(adm: Admission) -> set[int]:
    return set(adm.services.ranges["IPv4"].allocator.used)


# ------------------------------------------------------------------------------------------- defaults


def test_nodeport_service_defaults_like_the_real_server(adm: Admission) -> None:
    out = create(adm, svc("nginx-app", type="NodePort", selector={"app": "nginx-app"}, ports=[tcp(8060)]))
    spec = out["spec"]
    assert spec["sessionAffinity"] == "None"
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert "allocateLoadBalancerNodePorts" not in spec
    assert spec["ports"][0]["protocol"] == "TCP"
    assert spec["ports"][0]["targetPort"] == 8060
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in ipaddress.ip_network("10.96.0.0/12")
    assert spec["clusterIPs"] == [spec["clusterIP"]]


def test_clusterip_defaults_and_no_node_port(adm: Admission) -> None:
    out = create(adm, svc("nginx-svc", ports=[tcp(80, targetPort=80)], selector={"app": "nginx"}))
    spec = out["spec"]
    assert spec["type"] == "ClusterIP"
    assert "nodePort" not in spec["ports"][0]
    assert "externalTrafficPolicy" not in spec
    assert spec["internalTrafficPolicy"] == "Cluster"


def test_loadbalancer_gets_allocate_flag_node_port_and_local_gets_health_check(adm: Admission) -> None:
    lb = create(adm, svc("nginx-metallb", type="LoadBalancer", ports=[tcp(8090, targetPort=80)]))
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["ports"][0]["nodePort"] >= 30000
    assert "healthCheckNodePort" not in lb["spec"]
    local = create(adm, svc("local-lb", type="LoadBalancer", externalTrafficPolicy="Local", ports=[tcp(80)]))
    hc = local["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767
    assert hc != local["spec"]["ports"][0]["nodePort"]
    assert hc in node_ports_used(adm)


def test_loadbalancer_without_node_ports(adm: Admission) -> None:
    out = create(adm, svc("x", type="LoadBalancer", allocateLoadBalancerNodePorts=False, ports=[tcp(80)]))
    assert "nodePort" not in out["spec"]["ports"][0]
    assert node_ports_used(adm) == set()


def test_session_affinity_client_ip_default_timeout(adm: Admission) -> None:
    out = create(adm, svc("a", sessionAffinity="ClientIP", ports=[tcp(80)]))
    assert out["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    message = invalid_message(
        adm,
        svc(
            "b",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}},
            ports=[tcp(1)],
        ),
    )
    assert "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0" in message


def test_same_port_number_tcp_and_udp_share_a_node_port(adm: Admission) -> None:
    out = create(
        adm,
        svc(
            "dns",
            type="LoadBalancer",
            ports=[tcp(53, name="dns-tcp"), tcp(53, name="dns-udp", protocol="UDP"), tcp(80, name="web")],
        ),
    )
    ports = out["spec"]["ports"]
    assert ports[0]["nodePort"] == ports[1]["nodePort"]
    assert ports[2]["nodePort"] != ports[0]["nodePort"]


def test_headless_and_externalname(adm: Admission) -> None:
    headless = create(
        adm, svc("headless-service", clusterIP="None", ports=[tcp(80)], selector={"app": "nginx"})
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["clusterIPs"] == ["None"]
    assert headless["spec"]["ipFamilies"] == ["IPv4"]
    ext = create(adm, svc("my-externalname", type="ExternalName", externalName="www.example.com"))
    spec = ext["spec"]
    assert "clusterIP" not in spec and "ipFamilies" not in spec and "internalTrafficPolicy" not in spec
    assert spec["sessionAffinity"] == "None"
    assert ips_used(adm) == set()
    assert "spec.externalName: Required value" in invalid_message(adm, svc("e2", type="ExternalName"))
    assert 'spec.externalName: Invalid value: "not_a_dns"' in invalid_message(
        adm, svc("e3", type="ExternalName", externalName="not_a_dns")
    )


def test_create_drops_status_and_status_writes_get_ip_mode_vip(adm: Admission) -> None:
    obj = svc("lb", type="LoadBalancer", ports=[tcp(80)])
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}}
    out = create(adm, obj)
    assert out["status"] == {"loadBalancer": {}}
    new = copy.deepcopy(out)
    new["status"] = {
        "loadBalancer": {"ingress": [{"ip": "192.168.10.90"}, {"ip": "192.168.10.91", "ipMode": "Proxy"}]}
    }
    st = adm.update_status("", "services", out, new, False)
    assert st["status"]["loadBalancer"]["ingress"] == [
        {"ip": "192.168.10.90", "ipMode": "VIP"},
        {"ip": "192.168.10.91", "ipMode": "Proxy"},
    ]
    bad = copy.deepcopy(out)
    bad["status"] = {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}
    with pytest.raises(ApiError) as info:
        adm.update_status("", "services", out, bad, False)
    assert 'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip"' in info.value.message


# ------------------------------------------------------------------------------------------- nodePorts


def test_requested_node_port_honoured_duplicate_and_out_of_range_rejected_exactly(adm: Admission) -> None:
    out = create(adm, svc("nginx-app", type="NodePort", ports=[tcp(8060, nodePort=30001, targetPort=80)]))
    assert out["spec"]["ports"][0]["nodePort"] == 30001
    dup = svc("dup", type="NodePort", ports=[tcp(80, nodePort=30001, targetPort=80, name="80-80")])
    assert invalid_message(adm, dup) == (
        'Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30001: '
        "provided port is already allocated"
    )
    low = svc("low", type="NodePort", ports=[tcp(80, nodePort=29999)])
    assert invalid_message(adm, low) == (
        'Service "low" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the '
        "valid range. The range of valid ports is 30000-32767"
    )
    with pytest.raises(ApiError) as info:
        create(adm, dup)
    causes = info.value.status()["details"]["causes"]
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 30001: provided port is already allocated",
            "field": "spec.ports[0].nodePort",
        }
    ]


def test_failed_create_rolls_back_every_allocation(adm: Admission) -> None:
    create(adm, svc("a", type="NodePort", ports=[tcp(80, nodePort=30005)]))
    before = (node_ports_used(adm), ips_used(adm))
    # The first port allocates, the second clashes: nothing may stay allocated.
    bad = svc(
        "b", type="NodePort", ports=[tcp(80, name="x", nodePort=30006), tcp(81, name="y", nodePort=30005)]
    )
    invalid_message(adm, bad)
    assert (node_ports_used(adm), ips_used(adm)) == before


def test_dry_run_does_not_change_allocation_state(adm: Admission) -> None:
    out = create(adm, svc("a", type="NodePort", ports=[tcp(80, nodePort=30010)]), dry_run=True)
    assert out["spec"]["ports"][0]["nodePort"] == 30010
    assert out["spec"]["clusterIP"]
    assert node_ports_used(adm) == set() and ips_used(adm) == set()
    create(adm, svc("a", type="NodePort", ports=[tcp(80, nodePort=30010)]))
    before = (node_ports_used(adm), ips_used(adm))
    stored = create(adm, svc("c", type="NodePort", ports=[tcp(80)]))
    updated = copy.deepcopy(stored)
    updated["spec"]["type"] = "ClusterIP"
    adm.update("", "services", stored, updated, dry_run=True)
    assert stored["spec"]["ports"][0]["nodePort"] in node_ports_used(adm)
    adm.deleted("", "services", stored)
    assert (node_ports_used(adm), ips_used(adm)) == before


def test_delete_and_abort_release_allocations(adm: Admission) -> None:
    a = create(adm, svc("a", type="LoadBalancer", externalTrafficPolicy="Local", ports=[tcp(80)]))
    assert len(node_ports_used(adm)) == 2 and len(ips_used(adm)) == 1
    adm.deleted("", "services", a)
    assert node_ports_used(adm) == set() and ips_used(adm) == set()
    b = create(adm, svc("b", type="NodePort", ports=[tcp(80, nodePort=30001)], clusterIP="10.96.0.50"))
    adm.abort_create("", "services", b)
    again = create(adm, svc("b", type="NodePort", ports=[tcp(80, nodePort=30001)], clusterIP="10.96.0.50"))
    assert again["spec"]["clusterIP"] == "10.96.0.50"


def test_restore_rebuilds_allocations(adm: Admission) -> None:
    stored = create(adm, svc("a", type="NodePort", ports=[tcp(80, nodePort=30001)], clusterIP="10.96.0.1"))
    fresh = Admission(seed=2)
    fresh.restore([("", "services", stored), ("", "configmaps", {"metadata": {"name": "x"}})])
    assert "provided port is already allocated" in invalid_message(
        fresh, svc("b", type="NodePort", ports=[tcp(80, nodePort=30001)])
    )
    assert "provided IP is already allocated" in invalid_message(
        fresh, svc("c", clusterIP="10.96.0.1", ports=[tcp(1)])
    )


def test_node_port_range_is_configurable_and_full_range_is_an_error() -> None:
    adm = Admission(node_port_range=(31000, 31002), seed=3)
    got = {
        create(adm, svc(f"s{i}", type="NodePort", ports=[tcp(80)]))["spec"]["ports"][0]["nodePort"]
        for i in range(3)
    }
    assert got == {31000, 31001, 31002}
    with pytest.raises(ApiError) as info:
        create(adm, svc("full", type="NodePort", ports=[tcp(80)]))
    assert info.value.code == 500
    assert "range is full" in info.value.message
    assert len(adm.services.ranges["IPv4"].allocator.used) == 3, (
        "the clusterIP of the failed create was released"
    )


# ----------------------------------------------------------------------------------------- cluster IPs


def test_requested_cluster_ip_honoured_taken_or_outside_rejected(adm: Admission) -> None:
    k = create(adm, svc("kubernetes", clusterIP="10.96.0.1", ports=[tcp(443, name="https", targetPort=6443)]))
    assert k["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert invalid_message(adm, svc("x", clusterIP="10.96.0.1", ports=[tcp(80)])) == (
        'Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.1": '
        "failed to allocate IP 10.96.0.1: provided IP is already allocated"
    )
    assert invalid_message(adm, svc("y", clusterIP="10.0.0.1", ports=[tcp(80)])) == (
        'Service "y" is invalid: spec.clusterIPs[0]: Invalid value: "10.0.0.1": '
        "failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. "
        "The range of valid IPs is 10.96.0.0/12"
    )
    assert "not in the valid range" in invalid_message(adm, svc("z", clusterIP="10.96.0.0", ports=[tcp(80)]))
    assert "must be a valid IP address" in invalid_message(adm, svc("w", clusterIP="ten", ports=[tcp(80)]))


def test_dynamic_allocation_avoids_network_and_static_band() -> None:
    adm = Admission(service_cidr="10.0.0.0/24", seed=5)
    ips = [create(adm, svc(f"s{i}", ports=[tcp(80)]))["spec"]["clusterIP"] for i in range(200)]
    assert len(set(ips)) == 200
    offsets = sorted(int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.0.0.0")) for ip in ips)
    assert offsets[0] >= 16, "a /24 keeps its first 16 addresses for static IPs while the rest is free"
    assert 255 not in offsets and 0 not in offsets


def test_small_cidr_fills_up_exactly() -> None:
    adm = Admission(service_cidr="10.0.0.0/29", seed=5)
    ips = {create(adm, svc(f"s{i}", ports=[tcp(80)]))["spec"]["clusterIP"] for i in range(6)}
    assert ips == {f"10.0.0.{i}" for i in range(1, 7)}
    with pytest.raises(ApiError) as info:
        create(adm, svc("full", ports=[tcp(80)]))
    assert "failed to allocate a serviceIP: range is full" in info.value.message


def test_allocation_is_fast_for_5000_services() -> None:
    adm = Admission()
    start = time.perf_counter()
    for i in range(5000):
        create(adm, svc(f"s{i}", ports=[tcp(80)]))
    elapsed = time.perf_counter() - start
    assert len(adm.services.ranges["IPv4"].allocator.used) == 5000
    assert elapsed < 5, f"5000 creates took {elapsed:.2f}s"


def test_dual_stack_needs_a_v6_cidr() -> None:
    single = Admission(seed=1)
    assert "this cluster is not configured for dual-stack services" in invalid_message(
        single, svc("d", ipFamilyPolicy="RequireDualStack", ports=[tcp(80)])
    )
    assert 'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster' in invalid_message(
        single, svc("v6", ipFamilies=["IPv6"], ports=[tcp(80)])
    )
    prefer = create(single, svc("p", ipFamilyPolicy="PreferDualStack", ports=[tcp(80)]))
    assert prefer["spec"]["ipFamilies"] == ["IPv4"]

    dual = Admission(service_cidr_v6="fd00:10:96::/108", seed=1)
    out = create(dual, svc("d", ipFamilyPolicy="RequireDualStack", ports=[tcp(80)]))
    assert out["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    v4, v6 = out["spec"]["clusterIPs"]
    assert ipaddress.ip_address(v4) in ipaddress.ip_network("10.96.0.0/12")
    assert ipaddress.ip_address(v6) in ipaddress.ip_network("fd00:10:96::/108")
    only6 = create(dual, svc("six", ipFamilies=["IPv6"], ports=[tcp(80)]))
    assert only6["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert ipaddress.ip_address(only6["spec"]["clusterIP"]).version == 6
    asked = create(dual, svc("asked", clusterIP="fd00:10:96::10", ports=[tcp(80)]))
    assert asked["spec"]["ipFamilies"] == ["IPv6"]
    assert asked["spec"]["clusterIPs"] == ["fd00:10:96::10"]
    dual.deleted("", "services", out)
    assert v6 not in {str(ipaddress.ip_address(x)) for x in dual.services.ranges["IPv6"].allocator.used}


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"ports": [{"port": 0}]},
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        ({"ports": [{"port": 70000}]}, "spec.ports[0].port: Invalid value: 70000"),
        (
            {"ports": [{"port": 80, "protocol": "HTTP"}]},
            'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        ),
        ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name: Required value"),
        (
            {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]},
            'spec.ports[1].name: Duplicate value: "a"',
        ),
        ({"ports": [{"port": 80, "name": "Web"}]}, 'spec.ports[0].name: Invalid value: "Web"'),
        ({"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}, "spec.ports[1]: Duplicate value"),
        ({"ports": [{"port": 80, "targetPort": 0}]}, None),  # 0 means "same as port", like an omitted one
        (
            {"ports": [{"port": 80, "targetPort": "http_x"}]},
            'spec.ports[0].targetPort: Invalid value: "http_x"',
        ),
        ({}, "spec.ports: Required value"),
        (
            {"type": "Ingress", "ports": [{"port": 80}]},
            'spec.type: Unsupported value: "Ingress": supported values: "ClusterIP", "ExternalName", '
            '"LoadBalancer", "NodePort"',
        ),
        (
            {"ports": [{"port": 80, "nodePort": 30001}]},
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ),
        (
            {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]},
            "may not be set to 'None' for NodePort services",
        ),
        (
            {"sessionAffinity": "Sticky", "ports": [{"port": 80}]},
            'spec.sessionAffinity: Unsupported value: "Sticky"',
        ),
        (
            {"externalTrafficPolicy": "Local", "ports": [{"port": 80}]},
            'spec.externalTrafficPolicy: Invalid value: "Local": '
            "may only be set for externally-accessible services",
        ),
        ({"selector": {"app": "bad value"}, "ports": [{"port": 80}]}, "spec.selector: Invalid value"),
        (
            {"allocateLoadBalancerNodePorts": True, "ports": [{"port": 80}]},
            "spec.allocateLoadBalancerNodePorts: Forbidden",
        ),
        ({"externalIPs": ["1.2.3"], "ports": [{"port": 80}]}, 'spec.externalIPs[0]: Invalid value: "1.2.3"'),
    ],
)
def test_validation_messages(adm: Admission, spec: dict[str, Any], expected: str | None) -> None:
    obj = svc("v", **spec)
    if expected is None:
        assert create(adm, obj)["spec"]["ports"][0]["targetPort"] == 80
        return
    assert expected in invalid_message(adm, obj)


def test_several_causes_are_bracketed_like_the_real_server(adm: Admission) -> None:
    message = invalid_message(adm, svc("v", ports=[{"port": 0, "targetPort": 80, "protocol": "XTP"}]))
    assert message.startswith('Service "v" is invalid: [spec.ports[0].port: Invalid value: 0: ')
    assert message.endswith('supported values: "SCTP", "TCP", "UDP"]')


# ---------------------------------------------------------------------------------------------- update


def test_update_keeps_allocations_when_manifest_omits_them(adm: Admission) -> None:
    stored = create(
        adm, svc("nginx-app", type="NodePort", ports=[tcp(8060, targetPort=80)], selector={"a": "b"})
    )
    node_port = stored["spec"]["ports"][0]["nodePort"]
    # A PUT of the plain manifest (as `kubectl replace` sends it): no clusterIP, no nodePort.
    plain = svc("nginx-app", type="NodePort", ports=[tcp(8060, targetPort=80)], selector={"a": "c"})
    out = adm.update("", "services", stored, plain, False)
    assert out["spec"]["clusterIP"] == stored["spec"]["clusterIP"]
    assert out["spec"]["clusterIPs"] == stored["spec"]["clusterIPs"]
    assert out["spec"]["ports"][0]["nodePort"] == node_port
    assert out["spec"]["selector"] == {"a": "c"}
    assert node_port in node_ports_used(adm)


def test_cluster_ip_is_immutable(adm: Admission) -> None:
    stored = create(adm, svc("a", ports=[tcp(80)]))
    changed = copy.deepcopy(stored)
    changed["spec"]["clusterIP"] = "10.96.0.99"
    changed["spec"]["clusterIPs"] = ["10.96.0.99"]
    with pytest.raises(ApiError) as info:
        adm.update("", "services", stored, changed, False)
    assert info.value.code == 422
    assert (
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set'
        in info.value.message
    )


def test_type_changes_allocate_and_release(adm: Admission) -> None:
    stored = create(adm, svc("a", ports=[tcp(80)]))
    ip = stored["spec"]["clusterIP"]
    to_np = copy.deepcopy(stored)
    to_np["spec"]["type"] = "NodePort"
    np = adm.update("", "services", stored, to_np, False)
    node_port = np["spec"]["ports"][0]["nodePort"]
    assert np["spec"]["clusterIP"] == ip
    assert np["spec"]["externalTrafficPolicy"] == "Cluster"
    assert node_ports_used(adm) == {node_port}
    to_lb = copy.deepcopy(np)
    to_lb["spec"]["type"] = "LoadBalancer"
    to_lb["spec"]["externalTrafficPolicy"] = "Local"
    lb = adm.update("", "services", np, to_lb, False)
    assert lb["spec"]["ports"][0]["nodePort"] == node_port
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert node_ports_used(adm) == {node_port, lb["spec"]["healthCheckNodePort"]}
    back = copy.deepcopy(lb)
    back["spec"]["type"] = "ClusterIP"
    cip = adm.update("", "services", lb, back, False)
    for gone in ("externalTrafficPolicy", "healthCheckNodePort", "allocateLoadBalancerNodePorts"):
        assert gone not in cip["spec"], gone
    assert "nodePort" not in cip["spec"]["ports"][0]
    assert node_ports_used(adm) == set()
    to_ext = copy.deepcopy(cip)
    to_ext["spec"] = {"type": "ExternalName", "externalName": "db.example.com", **{"clusterIP": ip}}
    ext = adm.update("", "services", cip, to_ext, False)
    assert "clusterIP" not in ext["spec"]
    assert ips_used(adm) == set()
    again = adm.update("", "services", ext, svc("a", ports=[tcp(80)]), False)
    assert again["spec"]["clusterIP"] and len(ips_used(adm)) == 1


def test_update_changing_node_port_releases_the_old_one(adm: Admission) -> None:
    stored = create(adm, svc("a", type="NodePort", ports=[tcp(80, nodePort=30100)]))
    changed = copy.deepcopy(stored)
    changed["spec"]["ports"][0]["nodePort"] = 30101
    out = adm.update("", "services", stored, changed, False)
    assert out["spec"]["ports"][0]["nodePort"] == 30101
    assert node_ports_used(adm) == {30101}
    other = create(adm, svc("b", type="NodePort", ports=[tcp(80, nodePort=30100)]))
    assert other["spec"]["ports"][0]["nodePort"] == 30100
    clash = copy.deepcopy(out)
    clash["spec"]["ports"][0]["nodePort"] = 30100
    with pytest.raises(ApiError):
        adm.update("", "services", out, clash, False)
    assert node_ports_used(adm) == {30100, 30101}


# ---------------------------------------------------------------------------------------- other kinds


def test_pod_defaults_and_validation(adm: Admission) -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "nginx:1.15-alpine", "ports": [{"containerPort": 80}]}]
        },
    }
    out = adm.create("", "pods", pod, False)
    assert out["status"]["phase"] == "Pending"
    spec = out["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == (
        "Always",
        "ClusterFirst",
        30,
    )
    assert spec["schedulerName"] == "default-scheduler"
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["ports"][0]["protocol"] == "TCP"
    latest = adm.create(
        "",
        "pods",
        {"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        False,
    )
    assert latest["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    with pytest.raises(ApiError) as info:
        adm.create("", "pods", {"metadata": {"name": "r"}, "spec": {"containers": [{"name": "c"}]}}, False)
    assert info.value.message == 'Pod "r" is invalid: spec.containers[0].image: Required value'
    assert pod["spec"]["containers"][0].get("imagePullPolicy") is None, "the input is not modified"


def test_deployment_defaults_and_selector_check(adm: Admission) -> None:
    dep: dict[str, Any] = {
        "metadata": {"name": "nginx-app"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx-app"}},
            "template": {
                "metadata": {"labels": {"app": "nginx-app"}},
                "spec": {"containers": [{"name": "c1", "image": "nginx:1.15-alpine"}]},
            },
        },
    }
    out = adm.create("apps", "deployments", dep, False)
    spec = out["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    bad = copy.deepcopy(dep)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiError) as info:
        adm.create("apps", "deployments", bad, False)
    assert info.value.message == (
        'Deployment.apps "nginx-app" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other"}: `selector` does not match template `labels`'
    )
    moved = copy.deepcopy(out)
    moved["spec"]["selector"] = {"matchLabels": {"app": "x"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    with pytest.raises(ApiError) as info:
        adm.update("apps", "deployments", out, moved, False)
    assert "spec.selector: Invalid value" in info.value.message and "field is immutable" in info.value.message


def test_namespace_defaults(adm: Admission) -> None:
    out = adm.create("", "namespaces", {"metadata": {"name": "metallb-system"}}, False)
    assert out["spec"] == {"finalizers": ["kubernetes"]}
    assert out["status"] == {"phase": "Active"}
    assert out["metadata"]["labels"] == {"kubernetes.io/metadata.name": "metallb-system"}
    changed = copy.deepcopy(out)
    changed["metadata"]["labels"] = {"team": "net"}
    updated = adm.update("", "namespaces", out, changed, False)
    assert updated["metadata"]["labels"] == {"team": "net", "kubernetes.io/metadata.name": "metallb-system"}


def test_secret_string_data_and_endpointslice_validation(adm: Admission) -> None:
    secret = adm.create("", "secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}, False)
    assert secret["data"] == {"k": "dg=="} and secret["type"] == "Opaque" and "stringData" not in secret
    good = {
        "metadata": {"name": "e"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"port": 80}],
    }
    out = adm.create("discovery.k8s.io", "endpointslices", good, False)
    assert out["ports"][0]["protocol"] == "TCP"
    with pytest.raises(ApiError) as info:
        adm.create("discovery.k8s.io", "endpointslices", {**good, "addressType": "IPX"}, False)
    assert (
        'addressType: Unsupported value: "IPX": supported values: "FQDN", "IPv4", "IPv6"'
        in info.value.message
    )
    with pytest.raises(ApiError) as info:
        adm.create(
            "discovery.k8s.io", "endpointslices", {**good, "endpoints": [{"addresses": ["fd00::1"]}]}, False
        )
    assert 'endpoints[0].addresses[0]: Invalid value: "fd00::1"' in info.value.message
    with pytest.raises(ApiError):
        adm.update("discovery.k8s.io", "endpointslices", out, {**out, "addressType": "IPv6"}, False)


def test_unknown_kinds_pass_through_unchanged(adm: Admission) -> None:
    obj = {"metadata": {"name": "x"}, "spec": {"anything": [1, 2]}}
    assert adm.create("metallb.io", "ipaddresspools", obj, False) is obj
    assert adm.update("", "configmaps", obj, obj, False) is obj
    assert adm.update_status("", "pods", obj, obj, False) is obj
    adm.deleted("", "configmaps", obj)


def test_dropping_client_ip_affinity_drops_its_defaulted_config(adm: Admission) -> None:
    stored = create(adm, svc("a", sessionAffinity="ClientIP", ports=[tcp(80)]))
    # kubectl apply of the manifest without sessionAffinity: the patch nulls it, the config stays.
    new = copy.deepcopy(stored)
    del new["spec"]["sessionAffinity"]
    out = adm.update("", "services", stored, new, False)
    assert out["spec"]["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in out["spec"]
    # Setting a config while affinity is None is still an error.
    bad = copy.deepcopy(out)
    bad["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 5}}
    with pytest.raises(ApiError) as info:
        adm.update("", "services", out, bad, False)
    assert "spec.sessionAffinityConfig: Forbidden" in info.value.message


@given(st.lists(st.tuples(st.sampled_from(["create", "delete", "retype"]), st.integers(0, 7)), max_size=40))
@settings(max_examples=60, deadline=None)
def test_allocations_stay_consistent_under_random_writes(ops: list[tuple[str, int]]) -> None:
    """Whatever the sequence, the allocators hold exactly what the stored Services hold."""
    adm = Admission(service_cidr="10.0.0.0/28", node_port_range=(30000, 30009), seed=7)
    stored: dict[int, dict[str, Any]] = {}
    types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
    for op, n in ops:
        try:
            if op == "create" and n not in stored:
                kind = types[n % 4]
                spec: dict[str, Any] = {"type": kind}
                if kind == "ExternalName":
                    spec["externalName"] = "db.example.com"
                else:
                    spec["ports"] = [{"port": 80}]
                stored[n] = create(adm, svc(f"s{n}", **spec))
            elif op == "delete" and n in stored:
                adm.deleted("", "services", stored.pop(n))
            elif op == "retype" and n in stored:
                new = copy.deepcopy(stored[n])
                new["spec"]["type"] = "NodePort" if new["spec"]["type"] != "NodePort" else "ClusterIP"
                new["spec"].pop("externalName", None)
                new["spec"].setdefault("ports", [{"port": 80}])
                stored[n] = adm.update("", "services", stored[n], new, False)
        except ApiError as exc:
            assert "range is full" in exc.message
        held_ips = {
            int(ipaddress.ip_address(s["spec"]["clusterIP"]))
            for s in stored.values()
            if s["spec"].get("clusterIP") not in (None, "None")
        }
        held_ports = {
            p["nodePort"] for s in stored.values() for p in s["spec"].get("ports", []) if p.get("nodePort")
        }
        held_ports |= {
            s["spec"]["healthCheckNodePort"] for s in stored.values() if "healthCheckNodePort" in s["spec"]
        }
        assert ips_used(adm) == held_ips
        assert node_ports_used(adm) == held_ports


def test_status_update_lets_an_old_non_strict_ip_stay(adm: Admission) -> None:
    # IsValidIPForLegacyField's validOldIPs (staging/src/k8s.io/apimachinery/pkg/util/validation/ip.go): an
    # IP already in the old object passes unchanged, a new one must be strictly valid.
    out = create(adm, svc("lb", type="LoadBalancer", ports=[tcp(80)]))
    old = copy.deepcopy(out)
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "::ffff:192.0.2.1", "ipMode": "VIP"}]}}
    new = copy.deepcopy(old)
    new["status"]["loadBalancer"]["ingress"].append({"ip": "192.0.2.2"})
    kept = adm.update_status("", "services", old, new, False)
    assert [i["ip"] for i in kept["status"]["loadBalancer"]["ingress"]] == ["::ffff:192.0.2.1", "192.0.2.2"]
    new["status"]["loadBalancer"]["ingress"].append({"ip": "::ffff:192.0.2.3"})
    with pytest.raises(ApiError) as info:
        adm.update_status("", "services", old, new, False)
    assert info.value.message.endswith(
        'status.loadBalancer.ingress[2].ip: Invalid value: "::ffff:192.0.2.3": '
        "must not be an IPv4-mapped IPv6 address"
    )
