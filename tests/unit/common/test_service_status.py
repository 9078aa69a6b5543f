"""The IPs a Service's status shows, read past whatever else the ingress list holds."""

from __future__ import annotations

import ipaddress

from common.services import assigned_ips


def test_ips_after_a_hostname_or_garbage_are_still_read() -> None:
    ingress = [
        {"hostname": "lb.example.com"},
        {"ip": "10.0.0.1"},
        {"ip": "not-an-ip"},
        {"ip": " fd00::1 "},
        "junk",
        {"ip": "10.0.0.1"},
        {"ip": "10.0.0.2"},
    ]
    service = {"status": {"loadBalancer": {"ingress": ingress}}}
    assert assigned_ips(service) == tuple(
        ipaddress.ip_address(ip) for ip in ("10.0.0.1", "fd00::1", "10.0.0.2")
    )
