"""Conformance: CustomResourceDefinitions and custom resources as kube-apiserver 1.36 treats them, over REST.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver): structural schemas
(pkg/apiserver/schema/validation.go), pruning (pkg/apiserver/schema/pruning/algorithm.go), list-type sets and
maps (pkg/apiserver/schema/listtype/validation.go), selectable fields (the custom resource field converter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest
from tests.conftest import make_kubectl

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
REPO = Path(__file__).resolve().parents[2]
MERGE = "application/merge-patch+json"


def crd(plural: str, kind: str, schema: dict[str, Any] | None, **version: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "v1", "served": True, "storage": True, **version}
    if schema is not None:
        entry["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [entry],
        },
    }


def spec_schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": properties}}}


def invalid(live: Rest, body: dict[str, Any]) -> str:
    resp = live.request("POST", CRDS, body)
    assert resp.status_code == 422, resp.text
    return str(resp.json()["message"])


# ------------------------------------------------------------------------------------ structural schemas


def test_a_schema_is_required(live: Rest) -> None:
    assert invalid(live, crd("noschemas", "NoSchema", None)) == (
        'CustomResourceDefinition.apiextensions.k8s.io "noschemas.example.com" is invalid: '
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
    )


@pytest.mark.parametrize(
    ("schema", "detail"),
    [
        (
            {"type": "object", "properties": {"spec": {"properties": {"size": {"type": "integer"}}}}},
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be "
            "empty for specified object fields",
        ),
        (
            {"type": "string"},
            'spec.versions[0].schema.openAPIV3Schema.type: Invalid value: "string": must be object at the '
            "root",
        ),
        (
            spec_schema(tags={"type": "array", "items": {"description": "no type"}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[tags].items.type: Required "
            "value: must not be empty for specified array items",
        ),
    ],
)
def test_schemas_must_be_structural(live: Rest, schema: dict[str, Any], detail: str) -> None:
    message = invalid(live, crd("bads", "Bad", schema))
    assert message == f'CustomResourceDefinition.apiextensions.k8s.io "bads.example.com" is invalid: {detail}'


# ----------------------------------------------------------------------------------------------- pruning


def test_fields_the_schema_does_not_declare_are_pruned(live: Rest) -> None:
    schema = spec_schema(
        size={"type": "integer"},
        extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        labels={"type": "object", "additionalProperties": {"type": "string"}},
    )
    live.ok("POST", CRDS, crd("gadgets", "Gadget", schema))
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"size": 1, "color": "red", "extra": {"any": {"thing": 1}}, "labels": {"a": "b"}},
        "top": "level",
    }
    resp = live.request("POST", "/apis/example.com/v1/namespaces/default/gadgets", body)
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert out["spec"] == {"size": 1, "extra": {"any": {"thing": 1}}, "labels": {"a": "b"}}
    assert "top" not in out
    # The default fieldValidation (Warn) says what it dropped.
    warnings = resp.headers.get("Warning", "")
    assert 'unknown field \\"spec.color\\"' in warnings and 'unknown field \\"top\\"' in warnings


def test_fields_ironlb_writes_outside_the_metallb_schema_vanish(live: Rest) -> None:
    # The shipped CRD (config/crd) is what a real cluster prunes against: what the controller writes into an
    # IPAddressPool must be declared there, or it is lost.
    manifest = yaml.safe_load((REPO / "config/crd/metallb.io_ipaddresspools.yaml").read_text())
    live.ok("POST", CRDS, manifest)
    pools = "/apis/metallb.io/v1beta1/namespaces/default/ipaddresspools"
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "pool"},
        "spec": {"addresses": ["192.0.2.0/28"], "ironlbExtra": True},
    }
    assert "ironlbExtra" not in live.ok("POST", pools, pool)["spec"]
    status = {"status": {"assignedIPv4": 1, "availableIPv4": 15, "lastSeen": "now"}}
    out = live.ok("PATCH", f"{pools}/pool/status", status, MERGE)
    assert out["status"] == {"assignedIPv4": 1, "availableIPv4": 15}


# -------------------------------------------------------------------------------- list-type sets and maps


def test_list_type_map_and_set_duplicates_are_rejected(live: Rest) -> None:
    schema = spec_schema(
        rules={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
            },
        },
        hosts={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    )
    live.ok("POST", CRDS, crd("routes", "Route", schema))
    routes = "/apis/example.com/v1/namespaces/default/routes"

    def route(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "example.com/v1", "kind": "Route", "metadata": {"name": name}, "spec": spec}

    resp = live.request(
        "POST", routes, route("r1", rules=[{"name": "a", "port": 1}, {"name": "a", "port": 2}])
    )
    assert resp.status_code == 422, resp.text
    # field.Duplicate renders the key map with Go's %#v.
    assert resp.json()["message"] == (
        'Route.example.com "r1" is invalid: spec.rules[1]: Duplicate value: '
        'map[string]interface {}{"name":"a"}'
    )
    resp = live.request("POST", routes, route("r2", hosts=["x", "y", "x"]))
    assert resp.status_code == 422, resp.text
    assert resp.json()["message"] == 'Route.example.com "r2" is invalid: spec.hosts[2]: Duplicate value: "x"'
    live.ok("POST", routes, route("r3", rules=[{"name": "a"}, {"name": "b"}], hosts=["x", "y"]))


# ------------------------------------------------------------------------------------- selectable fields


def test_custom_resources_select_on_name_namespace_and_selectable_fields(live: Rest) -> None:
    schema = spec_schema(color={"type": "string"}, size={"type": "integer"})
    live.ok("POST", CRDS, crd("paints", "Paint", schema, selectableFields=[{"jsonPath": ".spec.color"}]))
    path = "/apis/example.com/v1/namespaces/default/paints"
    for name, color in (("p1", "red"), ("p2", "blue")):
        live.ok("POST", path, {"metadata": {"name": name}, "spec": {"color": color, "size": 1}})
    red = live.ok("GET", path, fieldSelector="spec.color=red")
    assert [i["metadata"]["name"] for i in red["items"]] == ["p1"]
    resp = live.request("GET", path, fieldSelector="spec.size=1")
    assert resp.status_code == 400
    assert resp.json()["message"] == "field label not supported: spec.size"


def test_kubectl_applies_ironlb_crds_server_side(live_server: ApiServerProcess, live: Rest) -> None:
    # How users install operators: `kubectl apply --server-side` of the CRDs, again and again.
    kubectl = make_kubectl(live_server.kubeconfig)
    for _ in range(2):
        kubectl("apply", "--server-side", "-f", str(REPO / "config/crd"))
    crd_obj = live.ok("GET", f"{CRDS}/l2advertisements.metallb.io")
    first = crd_obj["metadata"]["managedFields"][0]
    assert (first["manager"], first["operation"]) == ("kubectl", "Apply")
