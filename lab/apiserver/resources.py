"""The resource types the server serves: built-in kinds plus those declared by CustomResourceDefinitions.

Pure data: discovery documents (APIResourceList, APIGroupList, ...) are rendered from this registry.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]


@dataclass
class ResourceType:
    """One served resource at one group/version; versions of the same resource share one store key."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    has_status: bool = False
    # Kinds whose create strategy wipes client-sent status (services, pods, CRs with a status subresource...).
    reset_status_on_create: bool = False
    # Kinds whose strategy maintains metadata.generation (CRs, CRDs, workloads, pods).
    has_generation: bool = False
    has_scale: bool = False
    custom: bool = False
    printer_columns: list[dict[str, Any]] | None = None
    schema: dict[str, Any] | None = None
    list_kind: str = ""
    # A custom resource version's selectableFields, as field labels ("spec.color").
    selectable_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.list_kind:
            self.list_kind = self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: Iterable[str] = (),
    status: bool = False,
    reset: bool = False,
    generation: bool = False,
    categories: Iterable[str] = (),
    scale: bool = False,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=list(short),
        categories=list(categories),
        has_status=status,
        reset_status_on_create=reset,
        has_generation=generation,
        has_scale=scale,
    )


BUILTIN: list[ResourceType] = [
    _rt("", "v1", "Namespace", "namespaces", namespaced=False, short=["ns"], status=True),
    _rt("", "v1", "Service", "services", short=["svc"], status=True, reset=True, categories=["all"]),
    _rt("", "v1", "Endpoints", "endpoints", short=["ep"]),
    _rt("", "v1", "Pod", "pods", short=["po"], status=True, reset=True, generation=True, categories=["all"]),
    _rt("", "v1", "Node", "nodes", namespaced=False, short=["no"], status=True),
    _rt("", "v1", "ConfigMap", "configmaps", short=["cm"]),
    _rt("", "v1", "Secret", "secrets"),
    _rt("", "v1", "Event", "events", short=["ev"]),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short=["sa"]),
    _rt("", "v1", "LimitRange", "limitranges", short=["limits"]),
    _rt("", "v1", "ResourceQuota", "resourcequotas", short=["quota"], status=True),
    _rt("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=["pvc"], status=True),
    _rt("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short=["pv"], status=True),
    _rt("events.k8s.io", "v1", "Event", "events", short=["ev"]),
    _rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _rt("coordination.k8s.io", "v1", "Lease", "leases"),
    _rt(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short=["deploy"],
        status=True,
        reset=True,
        generation=True,
        categories=["all"],
        scale=True,
    ),
    _rt(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        short=["ds"],
        status=True,
        reset=True,
        generation=True,
        categories=["all"],
    ),
    _rt(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short=["rs"],
        status=True,
        reset=True,
        generation=True,
        categories=["all"],
        scale=True,
    ),
    _rt(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short=["sts"],
        status=True,
        reset=True,
        generation=True,
        categories=["all"],
        scale=True,
    ),
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=["netpol"], generation=True),
    _rt("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=["pdb"], status=True,
        generation=True),
    _rt("networking.k8s.io", "v1", "Ingress", "ingresses", short=["ing"], status=True, generation=True),
    _rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short=["crd", "crds"],
        status=True,
        reset=True,
        generation=True,
        categories=["api-extensions"],
    ),
]

# Group order in /apis as a real server lists them (the rest follow alphabetically).
GROUP_ORDER = [
    "apps",
    "events.k8s.io",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
]

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")


class Registry:
    """Lookup of served types by (group, version, plural) and the discovery documents derived from them."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        self.generation = 0  # bumped whenever the set of served kinds changes
        self._openapi_kinds: tuple[int, list[dict[str, Any]]] | None = None
        for rt in BUILTIN:
            self._by_gvr[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def types(self) -> list[ResourceType]:
        return list(self._by_gvr.values())

    def any_version(self, key: tuple[str, str]) -> ResourceType | None:
        for rt in self._by_gvr.values():
            if rt.key == key:
                return rt
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first (custom groups: the CRD's order of served versions)."""
        out: dict[str, list[str]] = {}
        for rt in self._by_gvr.values():
            if rt.group == "":
                continue
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for group, versions in out.items():
            out[group] = sorted(versions, key=_version_priority, reverse=True)
        return out

    # -- CRDs ---------------------------------------------------------------------------------------

    def register_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        """(Re)register the types a CRD declares; returns them."""
        name = crd["metadata"]["name"]
        self.unregister_crd(name)
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        group = spec.get("group", "")
        kind = names.get("kind", "")
        plural = names.get("plural", "")
        types: list[ResourceType] = []
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            subresources = version.get("subresources") or {}
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            rt = ResourceType(
                group=group,
                version=version["name"],
                kind=kind,
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=list(names.get("shortNames") or []),
                categories=list(names.get("categories") or []),
                has_status="status" in subresources,
                reset_status_on_create="status" in subresources,
                has_generation=True,
                has_scale="scale" in subresources,
                custom=True,
                printer_columns=version.get("additionalPrinterColumns"),
                schema=schema,
                list_kind=names.get("listKind") or kind + "List",
                selectable_fields=tuple(
                    str(f.get("jsonPath", "")).lstrip(".")
                    for f in version.get("selectableFields") or []
                    if isinstance(f, dict)
                ),
            )
            self._by_gvr[(group, rt.version, plural)] = rt
            types.append(rt)
        self._crd_types[name] = types
        self.generation += 1
        return types

    def unregister_crd(self, name: str) -> list[ResourceType]:
        types = self._crd_types.pop(name, [])
        for rt in types:
            self._by_gvr.pop((rt.group, rt.version, rt.plural), None)
        self.generation += 1
        return types

    def crd_of(self, key: tuple[str, str]) -> str | None:
        for name, types in self._crd_types.items():
            if types and types[0].key == key:
                return name
        return None

    # -- discovery ----------------------------------------------------------------------------------

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        gv = f"{group}/{version}" if group else version
        resources: list[dict[str, Any]] = []
        for rt in self._by_gvr.values():
            if rt.group != group or rt.version != version:
                continue
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(VERBS),
                "storageVersionHash": _storage_hash(rt),
            }
            if rt.short_names:
                entry["shortNames"] = rt.short_names
            if rt.categories:
                entry["categories"] = rt.categories
            resources.append(entry)
            if rt.has_status:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": list(SUB_VERBS),
                    }
                )
            if rt.has_scale:
                resources.append(
                    {
                        "name": f"{rt.plural}/scale",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": list(SUB_VERBS),
                    }
                )
            if rt.key == ("", "pods"):
                resources.append(
                    {
                        "name": "pods/binding",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "Binding",
                        "verbs": ["create"],
                    }
                )
            if rt.key == NAMESPACE_KEY:
                resources.append(
                    {
                        "name": "namespaces/finalize",
                        "singularName": "",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["update"],
                    }
                )
        if not resources:
            return None
        resources.sort(key=lambda r: str(r["name"]))
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = list(self.group_versions())
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        groups.sort(key=lambda g: (order.get(g, len(order)), g))
        rendered = [g for g in (self.api_group(name) for name in groups) if g is not None]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": rendered}

    def openapi_kinds_cached(self) -> list[dict[str, Any]]:
        if self._openapi_kinds is None or self._openapi_kinds[0] != self.generation:
            self._openapi_kinds = (self.generation, self.openapi_kinds())
        return self._openapi_kinds[1]

    def openapi_kinds(self) -> list[dict[str, Any]]:
        return [
            {
                "group": rt.group,
                "version": rt.version,
                "kind": rt.kind,
                "plural": rt.plural,
                "namespaced": rt.namespaced,
                "schema": rt.schema,
            }
            for rt in self._by_gvr.values()
        ]


def _storage_hash(rt: ResourceType) -> str:
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, then by numbers (v2 > v1, v1beta2 > v1beta1)."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (-1, 0, 0)
    major = int(m.group(1))
    stage = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, major, minor)
