"""Conformance: Service status as kube-apiserver 1.36 treats it, rule by rule, over the REST API.

Each expected value cites where the real server's behaviour comes from (paths in kubernetes/kubernetes).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.apiserver.rest import Rest

SERVICES = "/api/v1/namespaces/default/services"
MERGE = "application/merge-patch+json"


def service(name: str, type_: str = "LoadBalancer") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": type_, "selector": {"app": name}, "ports": [{"port": 80}]},
    }


def set_ingress(live: Rest, name: str, *ingress: dict[str, Any]) -> Any:
    body = {"status": {"loadBalancer": {"ingress": list(ingress)}}}
    return live.request("PATCH", f"{SERVICES}/{name}/status", body, MERGE)


def invalid_message(resp: Any) -> str:
    assert resp.status_code == 422, resp.text
    status = resp.json()
    assert status["reason"] == "Invalid"
    return str(status["message"])


def test_empty_status_reads_as_an_empty_load_balancer(live: Rest) -> None:
    # ServiceStatus.LoadBalancer is a struct, not a pointer (staging/src/k8s.io/api/core/v1/types.go), so
    # encoding/json always writes it; PrepareForCreate (pkg/registry/core/service/strategy.go) wipes any
    # status the client sent.
    body = service("st-empty")
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    created = live.ok("POST", SERVICES, body)
    assert created["status"] == {"loadBalancer": {}}
    assert live.ok("GET", f"{SERVICES}/st-empty")["status"] == {"loadBalancer": {}}
    cluster_ip = live.ok("POST", SERVICES, service("st-empty-cip", "ClusterIP"))
    assert cluster_ip["status"] == {"loadBalancer": {}}
    # Removing every ingress leaves the empty struct, not null (omitempty drops only the list).
    set_ingress(live, "st-empty", {"ip": "192.0.2.1"})
    cleared = live.ok("PATCH", f"{SERVICES}/st-empty/status", {"status": {"loadBalancer": None}}, MERGE)
    assert cleared["status"] == {"loadBalancer": {}}


def test_ingress_ip_gets_ip_mode_vip(live: Rest) -> None:
    # SetDefaults_Service (pkg/apis/core/v1/defaults.go): LoadBalancerIPMode is GA, ipMode defaults to VIP.
    live.ok("POST", SERVICES, service("st-vip"))
    out = set_ingress(live, "st-vip", {"ip": "192.0.2.10"}, {"hostname": "lb.example.com"}).json()
    assert out["status"]["loadBalancer"]["ingress"] == [
        {"ip": "192.0.2.10", "ipMode": "VIP"},
        {"hostname": "lb.example.com"},
    ]


# Messages: parseIP in staging/src/k8s.io/apimachinery/pkg/util/validation/ip.go, reached through
# IsValidIPForLegacyField from ValidateLoadBalancerStatus (pkg/apis/core/validation/validation.go) with
# StrictIPCIDRValidation on, its default since 1.36 (kubernetes/kubernetes#137053). Its test table
# (ip_test.go) lists zones ("1234::abcd%eth0") as invalid.
@pytest.mark.parametrize(
    ("ip", "detail"),
    [
        ("not-an-ip", "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        ("192.0.2.300", "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        ("fe80::1%eth0", "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        ("192.0.2.0/24", "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        ("::ffff:192.0.2.1", "must not be an IPv4-mapped IPv6 address"),
        ("192.0.2.010", "must not have leading 0s"),
    ],
)
def test_ingress_ip_must_be_a_strictly_valid_ip(live: Rest, ip: str, detail: str) -> None:
    name = "st-ip-" + re.sub("[^a-z0-9]", "-", ip)
    live.ok("POST", SERVICES, service(name))
    message = invalid_message(set_ingress(live, name, {"ip": ip, "ipMode": "VIP"}))
    assert message == (
        f'Service "{name}" is invalid: status.loadBalancer.ingress[0].ip: Invalid value: "{ip}": {detail}'
    )
    assert "ingress" not in live.ok("GET", f"{SERVICES}/{name}")["status"]["loadBalancer"]


def test_an_ip_given_as_hostname_is_rejected(live: Rest) -> None:
    # ValidateLoadBalancerStatus: a hostname that ParseIPSloppy accepts is "must be a DNS name, not an IP
    # address"; "192.0.2.1" is also a valid DNS-1123 subdomain, so that is the only cause.
    live.ok("POST", SERVICES, service("st-host"))
    message = invalid_message(set_ingress(live, "st-host", {"hostname": "192.0.2.1"}))
    assert message == (
        'Service "st-host" is invalid: status.loadBalancer.ingress[0].hostname: Invalid value: "192.0.2.1": '
        "must be a DNS name, not an IP address"
    )


def test_ip_mode_without_ip_is_forbidden(live: Rest) -> None:
    # ValidateLoadBalancerStatus: field.Forbidden(ipMode, "may not be specified when `ip` is not set").
    live.ok("POST", SERVICES, service("st-mode"))
    message = invalid_message(set_ingress(live, "st-mode", {"hostname": "lb.example.com", "ipMode": "VIP"}))
    assert message == (
        'Service "st-mode" is invalid: status.loadBalancer.ingress[0].ipMode: Forbidden: '
        "may not be specified when `ip` is not set"
    )


@pytest.mark.parametrize("type_", ["ClusterIP", "NodePort"])
def test_ingress_on_a_service_not_of_type_load_balancer_is_rejected(live: Rest, type_: str) -> None:
    # ValidateLoadBalancerStatus with AllowServiceLBStatusOnNonLB off (its default, pkg/features).
    name = f"st-non-lb-{type_.lower()}"
    live.ok("POST", SERVICES, service(name, type_))
    message = invalid_message(set_ingress(live, name, {"ip": "192.0.2.20", "ipMode": "VIP"}))
    assert message == (
        f'Service "{name}" is invalid: status.loadBalancer.ingress: Forbidden: '
        "may only be used when `spec.type` is 'LoadBalancer'"
    )


def test_type_change_away_from_load_balancer_clears_the_status(live: Rest) -> None:
    # dropTypeDependentFields (pkg/registry/core/service/strategy.go): "Clear the load-balancer status if it
    # is no longer appropriate".
    live.ok("POST", SERVICES, service("st-type"))
    assert set_ingress(live, "st-type", {"ip": "192.0.2.30"}).status_code == 200
    changed = live.ok("PATCH", f"{SERVICES}/st-type", {"spec": {"type": "ClusterIP"}}, MERGE)
    assert changed["status"] == {"loadBalancer": {}}
    assert live.ok("GET", f"{SERVICES}/st-type")["status"] == {"loadBalancer": {}}
    # A type change back does not bring it back: the controller must assign again.
    back = live.ok("PATCH", f"{SERVICES}/st-type", {"spec": {"type": "LoadBalancer"}}, MERGE)
    assert back["status"] == {"loadBalancer": {}}
