"""Service facts shared by every component: which Services are ours, and the IPs their status shows."""

from __future__ import annotations

import ipaddress
from typing import Any

from common.services import POOL_ANNOTATION_OUT, assigned_ips, ingress_for, is_handled, service_key

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
