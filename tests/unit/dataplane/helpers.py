"""Builders for Service and EndpointSlice JSON, as the API server returns them."""

from __future__ import annotations

from typing import Any


def service(
    name: str = "web",
    namespace: str = "default",
    type: str = "ClusterIP",
    cluster_ips: tuple[str, ...] = ("10.96.0.10",),
    ports: list[dict[str, Any]] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": type,
            "clusterIP": cluster_ips[0] if cluster_ips else None,
            "clusterIPs": list(cluster_ips),
            "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP", "port": 80}],
            **spec,
        },
    }
    if ingress is not None:
        body["status"] = {"loadBalancer": {"ingress": ingress}}
    return body


def endpoint(ip: str, node: str = "node1", ready: bool = True, serving: bool | None = None, terminating=None):
    conditions: dict[str, Any] = {"ready": ready}
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


def endpoint_slice(
    service_name: str = "web",
    endpoints: list[dict[str, Any]] | None = None,
    name: str | None = None,
    namespace: str = "default",
    address_type: str = "IPv4",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name or f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints or [],
    }
