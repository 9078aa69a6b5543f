"""Small builders for allocator tests: pools, configs, requests and Services as plain data."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from common.config import build_config, parse_address_range
from common.pools import Config, IPAddress, Pool, ServiceAllocation
from controller.requests import ServiceRequest


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def pool(
    name: str,
    *addresses: str,
    auto_assign: bool = True,
    avoid_buggy_ips: bool = False,
    service_allocation: ServiceAllocation | None = None,
) -> Pool:
    return Pool(
        name=name,
        ranges=tuple(parse_address_range(a) for a in addresses),
        auto_assign=auto_assign,
        avoid_buggy_ips=avoid_buggy_ips,
        service_allocation=service_allocation,
        source=f"IPAddressPool metallb-system/{name}",
    )


def config(*pools: Pool) -> Config:
    return build_config(pools, ())


def request(
    key: str,
    *,
    requested: tuple[str, ...] = (),
    pool: str | None = None,
    sharing_key: str | None = None,
    ports: tuple[tuple[int, str], ...] = ((80, "TCP"),),
    etp: str = "Cluster",
    selector: tuple[tuple[str, str], ...] = (("app", "x"),),
    families: tuple[int, ...] = (4,),
    require_all: bool = False,
    labels: tuple[tuple[str, str], ...] = (),
    namespace_labels: tuple[tuple[str, str], ...] = (),
) -> ServiceRequest:
    namespace = key.split("/", 1)[0]
    return ServiceRequest(
        key=key,
        namespace=namespace,
        labels=labels,
        namespace_labels=namespace_labels,
        requested_ips=tuple(ip(r) for r in requested),
        pool=pool,
        sharing_key=sharing_key,
        ports=ports,
        external_traffic_policy=etp,
        selector=selector,
        families=families,
        require_all_families=require_all,
    )


def lb_service(
    name: str = "web",
    ingress: Sequence[str] = (),
    annotations: dict[str, str] | None = None,
    type_: str = "LoadBalancer",
    **spec: Any,
) -> dict[str, Any]:
    """A Service in namespace "ns" with port 80/TCP, showing `ingress` in its status."""
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}], **spec},
    }
    if ingress:
        body["status"] = {"loadBalancer": {"ingress": [{"ip": i, "ipMode": "VIP"} for i in ingress]}}
    return body
