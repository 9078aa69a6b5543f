"""CustomResourceDefinitions: discovery, dynamic serving, scopes, versions, status subresource, printer
columns, schema defaults, and removal of the resources with their definition."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/ilbt.example.com/v1/namespaces/default/widgets"

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 3},
                "color": {"type": "string"},
                "parts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "count": {"type": "integer", "default": 1},
                        },
                    },
                },
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.ilbt.example.com"},
    "spec": {
        "group": "ilbt.example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": SCHEMA},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                ],
            },
            {"name": "v1beta1", "served": True, "storage": False, "schema": {"openAPIV3Schema": SCHEMA}},
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ilbt.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def test_crd_lifecycle(rest: Rest) -> None:
    assert rest.request("GET", WIDGETS).status_code == 404
    crd = rest.ok("POST", CRDS, copy.deepcopy(CRD))
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert crd["status"]["storedVersions"] == ["v1"]
    group = rest.ok("GET", "/apis/ilbt.example.com")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    resources = {r["name"]: r for r in rest.ok("GET", "/apis/ilbt.example.com/v1")["resources"]}
    assert resources["widgets"]["kind"] == "Widget" and resources["widgets"]["shortNames"] == ["wd"]
    assert "widgets/status" in resources
    assert "ilbt.example.com" in {g["name"] for g in rest.ok("GET", "/apis")["groups"]}

    created = rest.ok("POST", WIDGETS, widget("w1", color="red", parts=[{"name": "a"}]))
    assert created["spec"] == {"color": "red", "size": 3, "parts": [{"name": "a", "count": 1}]}
    assert created["metadata"]["generation"] == 1
    # The other served version sees the same object.
    assert rest.ok("GET", "/apis/ilbt.example.com/v1beta1/namespaces/default/widgets/w1")["apiVersion"] == (
        "ilbt.example.com/v1beta1"
    )
    # Status through /status only; spec through the main resource only.
    st = rest.ok(
        "PATCH",
        f"{WIDGETS}/w1/status",
        {"status": {"phase": "Ready"}, "spec": {"color": "blue"}},
        content_type="application/merge-patch+json",
    )
    assert st["status"] == {"phase": "Ready"} and st["spec"]["color"] == "red"
    main = rest.ok(
        "PATCH",
        f"{WIDGETS}/w1",
        {"status": {"phase": "Broken"}, "spec": {"color": "blue"}},
        content_type="application/merge-patch+json",
    )
    assert main["status"] == {"phase": "Ready"} and main["spec"]["color"] == "blue"
    assert main["metadata"]["generation"] == 2
    smp = rest.request(
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"color": "x"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert smp.status_code == 415 and smp.json()["reason"] == "UnsupportedMediaType"

    table = rest.session.get(
        rest.base + WIDGETS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    assert table.status_code == 200
    columns = [c["name"] for c in table.json()["columnDefinitions"]]
    assert columns[:3] == ["Name", "Color", "Size"]
    assert table.json()["rows"][0]["cells"][:3] == ["w1", "blue", 3]

    rest.ok("DELETE", f"{CRDS}/widgets.ilbt.example.com")
    assert rest.request("GET", WIDGETS).status_code == 404
    assert rest.request("GET", "/apis/ilbt.example.com/v1").status_code == 404
    # Re-creating the definition does not bring the old resources back.
    rest.ok("POST", CRDS, copy.deepcopy(CRD))
    assert rest.ok("GET", WIDGETS)["items"] == []


def test_cluster_scoped_crd_and_invalid_definitions(rest: Rest) -> None:
    crd = copy.deepcopy(CRD)
    crd["metadata"]["name"] = "gadgets.ilbt.example.com"
    crd["spec"]["scope"] = "Cluster"
    crd["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget"}
    crd["spec"]["versions"] = crd["spec"]["versions"][:1]
    rest.ok("POST", CRDS, crd)
    gadget = {"apiVersion": "ilbt.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}}
    made = rest.ok("POST", "/apis/ilbt.example.com/v1/gadgets", gadget)
    assert "namespace" not in made["metadata"] and made["spec"]["size"] == 3
    bad = copy.deepcopy(crd)
    bad["metadata"]["name"] = "wrong.ilbt.example.com"
    resp = rest.request("POST", CRDS, bad)
    assert resp.status_code == 422 and resp.json()["reason"] == "Invalid"


def test_crd_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    with ApiServerProcess(data) as server:
        rest = Rest(server.kubeconfig)
        rest.ok("POST", CRDS, copy.deepcopy(CRD))
        rest.ok("POST", WIDGETS, widget("kept", color="green"))
        rest.close()
    with ApiServerProcess(data) as server:
        rest = Rest(server.kubeconfig)
        assert rest.ok("GET", f"{WIDGETS}/kept")["spec"]["color"] == "green"
        rest.close()


def test_custom_resources_are_validated_against_the_schema(rest: Rest) -> None:
    crd = copy.deepcopy(CRD)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    spec["required"] = ["color"]
    spec["properties"]["color"]["enum"] = ["red", "blue"]
    spec["properties"]["size"].update({"minimum": 1, "maximum": 10})
    spec["properties"]["parts"]["maxItems"] = 2
    rest.ok("POST", CRDS, crd)
    ok = rest.ok("POST", WIDGETS, widget("fine", color="red", size=2))
    assert ok["spec"]["size"] == 2
    resp = rest.request("POST", WIDGETS, widget("bad", color="green", size="big"))
    assert resp.status_code == 422
    status = resp.json()
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Widget.ilbt.example.com "bad" is invalid: [spec.color: Unsupported value: "green": '
        'supported values: "red", "blue", spec.size: Invalid value: "string": '
        'spec.size in body must be of type integer: "string"]'
    )
    missing = rest.request("POST", WIDGETS, widget("nocolor", size=20, parts=[{}, {}, {}]))
    fields = sorted(c["field"] for c in missing.json()["details"]["causes"])
    assert fields == ["spec.color", "spec.parts", "spec.size"]
    update = rest.request(
        "PATCH", f"{WIDGETS}/fine", {"spec": {"size": 0}}, content_type="application/merge-patch+json"
    )
    assert update.status_code == 422 and "should be greater than or equal to 1" in update.json()["message"]
    bad_status = rest.request(
        "PATCH",
        f"{WIDGETS}/fine/status",
        {"status": {"phase": 3}},
        content_type="application/merge-patch+json",
    )
    assert bad_status.status_code == 422


def test_metallb_crds_and_examples_are_accepted(kubectl) -> None:
    repo = Path(__file__).resolve().parents[2]
    kubectl("apply", "-f", str(repo / "config" / "crd"))
    kubectl("wait", "--for=condition=Established", "crd/ipaddresspools.metallb.io", "--timeout=10s")
    kubectl("create", "namespace", "metallb-system")
    kubectl("apply", "-f", str(repo / "config" / "examples" / "ipaddresspool.yaml"))
    bad = kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input="apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        "metadata: {name: x, namespace: metallb-system}\nspec: {autoAssign: 'yes'}\n",
    )
    assert bad.returncode != 0
    assert "spec.autoAssign" in bad.stderr and "must be of type boolean" in bad.stderr
