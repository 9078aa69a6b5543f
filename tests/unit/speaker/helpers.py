"""Builders for the speaker's pure inputs, through the same parsers the daemon uses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from common.config import rebuild_config
from common.endpoints import ServingEndpoints
from common.pools import Config
from speaker.model import NodeFacts, ServiceFacts, node_facts

TUTORIAL_POOL = """\
address-pools:
- name: default
  protocol: layer2
  addresses:
  - 192.168.10.90-192.168.10.100
  - fd00:10::90-fd00:10::9f
"""


def configmap(text: str = TUTORIAL_POOL) -> dict[str, Any]:
    return {"metadata": {"namespace": "metallb-system", "name": "config"}, "data": {"config": text}}


def ip_pool(name: str, *addresses: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "metallb-system", "name": name, "labels": dict(labels or {})},
        "spec": {"addresses": list(addresses)},
    }


def l2adv(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "metallb-system", "name": name}, "spec": spec}


def config(
    cm: dict[str, Any] | None = None,
    pools: Iterable[dict[str, Any]] = (),
    advertisements: Iterable[dict[str, Any]] = (),
) -> Config:
    return rebuild_config(cm, list(pools), list(advertisements))


def node(
    name: str, labels: Mapping[str, str] | None = None, network_unavailable: bool = False, ip: str = ""
) -> NodeFacts:
    conditions = [{"type": "Ready", "status": "True"}]
    if network_unavailable:
        conditions.append({"type": "NetworkUnavailable", "status": "True"})
    return node_facts({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": ip or "192.168.10.1"}],
        },
    })  # fmt: skip


def nodes(*facts: NodeFacts) -> dict[str, NodeFacts]:
    return {f.name: f for f in facts}


def svc(key: str, *ips: str, local: bool = False) -> ServiceFacts:
    return ServiceFacts(key=key, ips=tuple(ipaddress.ip_address(i) for i in ips), local=local)


def serving(*nodes_v4: str, v6: Iterable[str] = ()) -> ServingEndpoints:
    by_version = []
    if nodes_v4:
        by_version.append((4, frozenset(nodes_v4)))
    if v6:
        by_version.append((6, frozenset(v6)))
    return ServingEndpoints(any_serving=True, nodes_by_version=tuple(by_version))


THREE = ("node1", "node2", "node3")
