"""ServiceL2Status objects (metallb.io/v1beta1, as MetalLB 0.14+): what to create, patch or delete so that
`kubectl get servicel2status -A` shows which node announces each Service. Pure: objects in, actions out.

As in MetalLB, each speaker writes an object for each Service it announces, in its own namespace, named
``l2-<random>`` and labelled with the node and the Service. The election is per IP, so the two families of a
dual-stack Service may be announced by two nodes: one object each. An announcing speaker deletes the objects
of nodes that do not announce the Service (a previous owner that died cannot), and every speaker deletes its
own objects for Services it no longer announces. One speaker, the janitor, also deletes what dead speakers
left for Services nobody announces, and the objects of Services that no longer exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

GROUP_VERSION = "metallb.io/v1beta1"
PLURAL = "servicel2statuses"
LABEL_NODE = "metallb.io/node"
LABEL_SERVICE_NAME = "metallb.io/service-name"
LABEL_SERVICE_NAMESPACE = "metallb.io/service-namespace"


@dataclass(frozen=True)
class Create:
    service: str
    body: Mapping[str, Any]
    status: Mapping[str, Any]


@dataclass(frozen=True)
class PatchStatus:
    name: str
    status: Mapping[str, Any]


@dataclass(frozen=True)
class Delete:
    name: str
    uid: str
    why: str


Action = Create | PatchStatus | Delete


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, Mapping) else {}


def service_of(obj: Mapping[str, Any]) -> str | None:
    labels = _labels(obj)
    name, namespace = labels.get(LABEL_SERVICE_NAME), labels.get(LABEL_SERVICE_NAMESPACE)
    if not name or namespace is None:
        return None
    return f"{namespace}/{name}"


def node_of(obj: Mapping[str, Any]) -> str:
    return str(_labels(obj).get(LABEL_NODE, ""))


def desired_status(node: str, service: str, interfaces: Iterable[str]) -> dict[str, Any]:
    namespace, _, name = service.partition("/")
    return {
        "node": node,
        "serviceName": name,
        "serviceNamespace": namespace,
        "interfaces": [{"name": i} for i in sorted(set(interfaces))],
    }


def new_object(
    node: str, service: str, namespace: str, owner: Mapping[str, str] | None = None
) -> dict[str, Any]:
    service_namespace, _, service_name = service.partition("/")
    metadata: dict[str, Any] = {
        "generateName": "l2-",
        "namespace": namespace,
        "labels": {
            LABEL_NODE: node,
            LABEL_SERVICE_NAME: service_name,
            LABEL_SERVICE_NAMESPACE: service_namespace,
        },
    }
    if owner:  # the speaker's Pod: its deletion garbage-collects the objects, as in MetalLB
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", **owner}]
    return {"apiVersion": GROUP_VERSION, "kind": "ServiceL2Status", "metadata": metadata, "spec": {}}


def actions_for(
    service: str,
    me: str,
    wanted: Iterable[str] | None,
    existing: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    owners: AbstractSet[str] = frozenset(),
    janitor: bool = False,
    alive: AbstractSet[str] = frozenset(),
    service_exists: bool = True,
    owner: Mapping[str, str] | None = None,
) -> list[Action]:
    """What to do for one Service. ``wanted``: the interfaces this node announces it on, or None;
    ``owners``: every node announcing it, as this speaker's election says."""
    actions: list[Action] = []
    mine: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    for obj in existing:
        (mine if node_of(obj) == me else others).append(obj)

    def delete(obj: Mapping[str, Any], why: str) -> Delete:
        metadata = obj.get("metadata") or {}
        return Delete(str(metadata.get("name", "")), str(metadata.get("uid", "")), why)

    if wanted is None:
        actions += [delete(obj, "not announced from this node") for obj in mine]
        if janitor:
            for obj in others:
                if not service_exists:
                    actions.append(delete(obj, "the Service is gone"))
                elif node_of(obj) not in alive and node_of(obj) not in owners:
                    actions.append(delete(obj, f"the speaker of node {node_of(obj)!r} is gone"))
        return actions
    status = desired_status(me, service, wanted)
    actions += [
        delete(obj, "not announced from that node now") for obj in others if node_of(obj) not in owners
    ]
    if not mine:
        actions.append(Create(service, new_object(me, service, namespace, owner), status))
        return actions
    keep, extra = mine[0], mine[1:]
    actions += [delete(obj, "duplicate") for obj in extra]
    if (keep.get("status") or {}) != status:
        actions.append(PatchStatus(str((keep.get("metadata") or {}).get("name", "")), status))
    return actions
