"""Service facts shared by every component: which Services are ours, and the IPs their status shows."""

from __future__ import annotations

import ipaddress
from typing import Any

from common.services import (
    MAX_ANNOTATION_VALUE,
    POOL_ANNOTATION_OUT,
    assigned_ips,
    ingress_for,
    is_handled,
    project_service,
    service_key,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "LoadBalancer", **spec}}


def test_is_handled() -> None:
    lb = service()
    assert is_handled(lb, None)
    assert not is_handled(lb, "ironlb.io/lb")
    assert not is_handled(service(), "x") and not is_handled({"spec": {"type": "ClusterIP"}}, None)
    classed = service(loadBalancerClass="ironlb.io/lb")
    assert is_handled(classed, "ironlb.io/lb")
    assert not is_handled(classed, None)
    assert not is_handled(service(loadBalancerClass="other"), "ironlb.io/lb")
    assert not is_handled({}, None)


def test_ingress_and_assigned_ips() -> None:
    ips = (V4("192.168.10.90"), V6("fd00::1"))
    ingress = ingress_for(ips)
    assert ingress == [{"ip": "192.168.10.90", "ipMode": "VIP"}, {"ip": "fd00::1", "ipMode": "VIP"}]
    svc = {"status": {"loadBalancer": {"ingress": [*ingress, {"hostname": "x"}, {"ip": "junk"}, ingress[0]]}}}
    assert assigned_ips(svc) == ips
    assert assigned_ips({}) == ()
    assert assigned_ips({"status": {"loadBalancer": {"ingress": "nope"}}}) == ()
    assert POOL_ANNOTATION_OUT == "metallb.io/ip-allocated-from-pool"


def test_service_key() -> None:
    assert service_key(service()) == "shop/web"
    assert service_key({}) == "/"


def _big_service(type_: str = "LoadBalancer") -> dict[str, Any]:
    blob = "x" * 100_000
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "generation": 3,
            "labels": {"app": "web"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": blob,
                "tenant.example/notes": blob,
                "metallb.io/allow-shared-ip": "k",
                "metallb.universe.tf/address-pool": "p" * 5000,
                POOL_ANNOTATION_OUT: "default",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {"f:annotations": blob}}}],
            "finalizers": ["example.com/x"],
        },
        "spec": {
            "type": type_,
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 31000}],
            "clusterIP": "10.96.0.10",
            "externalTrafficPolicy": "Local",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP", "ports": []}]}},
    }


def test_projection_keeps_what_the_controller_reads_and_bounds_the_rest() -> None:
    projected = project_service(_big_service())
    assert projected == {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "generation": 3,
            "labels": {"app": "web"},
            "annotations": {
                "metallb.io/allow-shared-ip": "k",
                "metallb.universe.tf/address-pool": "p" * (MAX_ANNOTATION_VALUE + 1),
                POOL_ANNOTATION_OUT: "default",
            },
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}],
            "externalTrafficPolicy": "Local",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }
    assert len(repr(projected)) < 2 * MAX_ANNOTATION_VALUE
    assert assigned_ips(projected) == (V4("192.0.2.1"),) and is_handled(projected, None)


def test_projection_of_a_service_that_is_not_a_load_balancer() -> None:
    """Its labels, selector and ports are never read; status and our pool annotation are, to clear them."""
    projected = project_service(_big_service("ClusterIP"))
    assert projected["metadata"]["annotations"] == {POOL_ANNOTATION_OUT: "default"}
    assert "labels" not in projected["metadata"]
    assert projected["spec"] == {"type": "ClusterIP"}
    assert assigned_ips(projected) == (V4("192.0.2.1"),)
    assert project_service({}) == {"metadata": {}, "spec": {}}


def test_projection_of_odd_values() -> None:
    """A ClusterIP Service keeps its loadBalancerClass; a Cluster-policy one drops its selector; annotation
    values that are not text are kept as they are (parse_service names them); ingress entries without an IP
    are left out."""
    odd = service(loadBalancerClass="x", selector={"app": "web"}, externalTrafficPolicy="Cluster")
    odd["metadata"]["annotations"] = {"metallb.io/address-pool": 5}
    odd["status"] = {"loadBalancer": {"ingress": ["ip", {"hostname": "h"}, {"ip": "192.0.2.9"}]}}
    assert project_service(odd) == {
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"metallb.io/address-pool": 5}},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "x", "externalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}},
    }
    cluster_ip = {"spec": {"type": "ClusterIP", "loadBalancerClass": "x", "selector": {"app": "web"}}}
    assert project_service(cluster_ip)["spec"] == {"type": "ClusterIP", "loadBalancerClass": "x"}


def test_projection_of_a_service_without_a_selector() -> None:
    """A Service with hand-made endpoints has no selector: nothing to drop."""
    projected = project_service(service(externalTrafficPolicy="Cluster"))
    assert projected["spec"] == {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster"}
