"""Unit tests of lab.apiserver.openapi: the documents kubectl reads, and strict field validation."""

from __future__ import annotations

from typing import Any

import yaml

from lab.apiserver.openapi import (
    openapi_v2,
    openapi_v3_discovery,
    openapi_v3_group_version,
    unknown_fields,
)
from tests.tutorial import NGINX_APP, TUTORIAL_DIR, manifest

CORE: list[dict[str, Any]] = [
    {"group": "", "version": "v1", "kind": k, "plural": p, "namespaced": ns, "schema": None}
    for k, p, ns in [
        ("Service", "services", True),
        ("Pod", "pods", True),
        ("Namespace", "namespaces", False),
        ("ConfigMap", "configmaps", True),
        ("Node", "nodes", False),
    ]
]
APPS: list[dict[str, Any]] = [
    {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "plural": "deployments",
        "namespaced": True,
        "schema": None,
    }
]
POOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "addresses": {"type": "array", "items": {"type": "string"}},
                "autoAssign": {"type": "boolean", "default": True, "nullable": True},
                "serviceAllocation": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"assigned": {"type": "integer"}}},
    },
}
POOL: dict[str, Any] = {
    "group": "metallb.io",
    "version": "v1beta1",
    "kind": "IPAddressPool",
    "plural": "ipaddresspools",
    "namespaced": True,
    "schema": POOL_SCHEMA,
}
KINDS: list[dict[str, Any]] = [*CORE, *APPS, POOL]


def supports_field_validation(doc: dict[str, Any], group: str, version: str, kind: str) -> bool:
    """kubectl's supportsQueryParamV3: the first PATCH operation for the GVK must list fieldValidation."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if not op:
            continue
        if op.get("x-kubernetes-group-version-kind") != {"group": group, "version": version, "kind": kind}:
            continue
        return any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op.get("parameters", []))
    return False


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def test_v3_discovery_lists_every_group_version_with_a_content_hash() -> None:
    discovery = openapi_v3_discovery(KINDS)
    assert set(discovery["paths"]) == {"api/v1", "apis/apps/v1", "apis/metallb.io/v1beta1"}
    url = discovery["paths"]["api/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/api/v1?hash=") and len(url.split("hash=")[1]) == 128
    assert openapi_v3_discovery(KINDS) == discovery, "the hash is stable"
    changed = openapi_v3_discovery([*KINDS[:-1], {**POOL, "schema": {"type": "object"}}])
    assert changed["paths"]["api/v1"] == discovery["paths"]["api/v1"]
    assert changed["paths"]["apis/metallb.io/v1beta1"] != discovery["paths"]["apis/metallb.io/v1beta1"]


def test_v3_group_version_documents_advertise_field_validation_for_every_kind() -> None:
    assert openapi_v3_group_version(KINDS, "batch", "v1") is None
    core = openapi_v3_group_version(KINDS, "", "v1")
    assert core is not None and core["openapi"].startswith("3.")
    for kind in ("Service", "Pod", "Namespace", "ConfigMap", "Node"):
        assert supports_field_validation(core, "", "v1", kind), kind
    assert not supports_field_validation(core, "apps", "v1", "Deployment")
    assert "/api/v1/namespaces/{namespace}/services/{name}" in core["paths"]
    assert "/api/v1/namespaces/{name}" in core["paths"]
    apps = openapi_v3_group_version(KINDS, "apps", "v1")
    assert apps is not None and supports_field_validation(apps, "apps", "v1", "Deployment")
    pool = openapi_v3_group_version(KINDS, "metallb.io", "v1beta1")
    assert pool is not None and supports_field_validation(pool, "metallb.io", "v1beta1", "IPAddressPool")
    patch_types = set(
        pool["paths"]["/apis/metallb.io/v1beta1/namespaces/{namespace}/ipaddresspools/{name}"]["patch"][
            "requestBody"
        ]["content"]
    )
    assert "application/strategic-merge-patch+json" not in patch_types


def test_v3_components_are_closed_and_carry_patch_metadata() -> None:
    for group, version in (("", "v1"), ("apps", "v1"), ("metallb.io", "v1beta1")):
        doc = openapi_v3_group_version(KINDS, group, version)
        assert doc is not None
        schemas = doc["components"]["schemas"]
        for ref in refs(doc):
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
    apps = openapi_v3_group_version(KINDS, "apps", "v1")
    assert apps is not None
    schemas = apps["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]
    strategy = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    # As on the real server: a $ref with siblings is wrapped in allOf, the strategy stays next to it.
    assert strategy == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}],
        "x-kubernetes-patch-strategy": "retainKeys",
    }
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    ports = schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    core = openapi_v3_group_version(KINDS, "", "v1")
    assert core is not None
    svc_ports = core["components"]["schemas"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert svc_ports["x-kubernetes-patch-merge-key"] == "port"
    assert "io.k8s.api.apps.v1.Deployment" not in core["components"]["schemas"], "only the GV's own closure"


def test_custom_resource_schemas_in_v2_and_v3() -> None:
    v3 = openapi_v3_group_version(KINDS, "metallb.io", "v1beta1")
    assert v3 is not None
    pool = v3["components"]["schemas"]["io.metallb.v1beta1.IPAddressPool"]
    assert pool["x-kubernetes-group-version-kind"] == [
        {"group": "metallb.io", "version": "v1beta1", "kind": "IPAddressPool"}
    ]
    assert pool["properties"]["metadata"] == {
        "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    assert pool["properties"]["spec"]["properties"]["autoAssign"]["nullable"] is True
    assert POOL_SCHEMA["properties"]["metadata"] == {"type": "object"}, "the CRD's schema is not modified"
    v2 = openapi_v2(KINDS)
    assert v2["swagger"] == "2.0"
    defs = v2["definitions"]
    v2pool = defs["io.metallb.v1beta1.IPAddressPool"]
    assert "nullable" not in v2pool["properties"]["spec"]["properties"]["autoAssign"]
    assert "default" not in v2pool["properties"]["spec"]["properties"]["autoAssign"]
    assert "properties" not in v2pool["properties"]["spec"]["properties"]["serviceAllocation"]
    assert defs["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"][0]["kind"] == "Service"
    for ref in refs(v2):
        assert ref.removeprefix("#/definitions/") in defs, ref


def test_kind_without_schema_is_permissive() -> None:
    open_kind: dict[str, Any] = {
        "group": "example.com",
        "version": "v1",
        "kind": "Thing",
        "plural": "things",
        "namespaced": True,
        "schema": None,
    }
    doc = openapi_v3_group_version([open_kind], "example.com", "v1")
    assert doc is not None
    thing = doc["components"]["schemas"]["com.example.v1.Thing"]
    assert thing["x-kubernetes-preserve-unknown-fields"] is True
    assert unknown_fields([open_kind], "example.com", "v1", "Thing", {"spec": {"anything": 1}}) == []


def test_tutorial_objects_have_no_unknown_fields() -> None:
    for obj in yaml.safe_load_all(manifest(*sorted(p.name for p in TUTORIAL_DIR.glob("*.yaml")))):
        group, _, version = obj["apiVersion"].rpartition("/")
        assert unknown_fields(KINDS, group, version, obj["kind"], obj) == [], obj["kind"]


def test_misspelt_fields_are_reported_with_their_paths() -> None:
    docs = list(yaml.safe_load_all(NGINX_APP))
    deployment, service = docs[0], docs[1]
    service["spec"]["prots"] = service["spec"].pop("ports")
    service["metadata"]["lables"] = {"a": "b"}
    assert unknown_fields(KINDS, "", "v1", "Service", service) == ["metadata.lables", "spec.prots"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolcy"] = "Always"
    container["ports"][0]["contianerPort"] = 81
    deployment["spec"]["replica"] = 3
    assert unknown_fields(KINDS, "apps", "v1", "Deployment", deployment) == [
        "spec.template.spec.containers[0].ports[0].contianerPort",
        "spec.template.spec.containers[0].imagePullPolcy",
        "spec.replica",
    ]
    # Maps (labels, data, selector) take any key; arbitrary parts (probes) take anything.
    container["livenessProbe"] = {"httpGet": {"path": "/", "port": 80}, "whatever": True}
    deployment["metadata"]["labels"]["any/key"] = "v"
    assert "spec.template.spec.containers[0].livenessProbe.whatever" not in unknown_fields(
        KINDS, "apps", "v1", "Deployment", deployment
    )


def test_unknown_fields_of_custom_resources() -> None:
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "default", "namespace": "metallb-system", "labels": {"a": "b"}},
        "spec": {
            "addresses": ["192.168.10.90-192.168.10.100"],
            "autoAssign": True,
            "serviceAllocation": {"anything": {"goes": 1}},
            "labels": {"x": "y"},
            "adresses": [],
        },
        "status": {"assigned": 1, "extra": 2},
    }
    assert unknown_fields(KINDS, "metallb.io", "v1beta1", "IPAddressPool", pool) == [
        "spec.adresses",
        "status.extra",
    ]
    assert unknown_fields(KINDS, "metallb.io", "v1", "IPAddressPool", pool) == [], (
        "unknown version: no opinion"
    )
