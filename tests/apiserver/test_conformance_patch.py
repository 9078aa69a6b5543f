"""Conformance: server-side apply and strategic merge patch as kube-apiserver 1.36 does them, over REST.

Server-side apply: the handler (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go) and the field
manager (k8s.io/apimachinery/pkg/util/managedfields) over sigs.k8s.io/structured-merge-diff (merge/update.go:
Updater.Apply prunes what a manager stops applying and reports conflicts). Strategic merge patch:
k8s.io/apimachinery/pkg/util/strategicpatch/patch.go (mergeSlice, normalizeElementOrder, mergeSortedSlice).
"""

from __future__ import annotations

import json
from typing import Any

from tests.apiserver.rest import Rest

CMS = "/api/v1/namespaces/default/configmaps"
SVCS = "/api/v1/namespaces/default/services"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
APPLY = "application/apply-patch+yaml"
SMP = "application/strategic-merge-patch+json"


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def apply(live: Rest, path: str, body: dict[str, Any], manager: str, **params: Any) -> Any:
    return live.request("PATCH", path, json.dumps(body), APPLY, fieldManager=manager, **params)


def managers(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]]


# ------------------------------------------------------------------------------------ server-side apply


def test_apply_needs_a_field_manager(live: Rest) -> None:
    # ValidatePatchOptions (k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go), reported by
    # the patch handler as Invalid on PatchOptions.meta.k8s.io.
    resp = live.request("PATCH", f"{CMS}/ssa-nomanager", json.dumps(cm("ssa-nomanager")), APPLY)
    assert resp.status_code == 422, resp.text
    assert resp.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )


def test_apply_creates_and_records_managed_fields(live: Rest) -> None:
    resp = apply(live, f"{CMS}/ssa-create", cm("ssa-create", a="1"), "alice")
    assert resp.status_code == 201, resp.text
    [entry] = resp.json()["metadata"]["managedFields"]
    assert entry["manager"] == "alice" and entry["operation"] == "Apply" and entry["apiVersion"] == "v1"
    assert entry["fieldsType"] == "FieldsV1" and entry["fieldsV1"] == {"f:data": {"f:a": {}}}
    assert entry["time"].endswith("Z")
    # A merge patch by another manager adds an Update entry for the field it changed.
    patched = live.ok(
        "PATCH", f"{CMS}/ssa-create", {"data": {"b": "2"}}, "application/merge-patch+json", fieldManager="bob"
    )
    assert managers(patched) == [("alice", "Apply"), ("bob", "Update")]
    assert patched["metadata"]["managedFields"][1]["fieldsV1"] == {"f:data": {"f:b": {}}}


def test_a_field_dropped_from_the_applied_manifest_is_removed(live: Rest) -> None:
    apply(live, f"{CMS}/ssa-drop", cm("ssa-drop", a="1", b="2"), "alice")
    out = apply(live, f"{CMS}/ssa-drop", cm("ssa-drop", a="1"), "alice").json()
    assert out["data"] == {"a": "1"}
    # ...unless another manager owns it too: then it stays.
    apply(live, f"{CMS}/ssa-drop", cm("ssa-drop", a="1", c="3"), "alice")
    apply(live, f"{CMS}/ssa-drop", cm("ssa-drop", c="3"), "carol")
    out = apply(live, f"{CMS}/ssa-drop", cm("ssa-drop", a="1"), "alice").json()
    assert out["data"] == {"a": "1", "c": "3"}


def test_a_conflict_between_managers_is_409_with_the_real_message(live: Rest) -> None:
    # getConflictMessage and printManager (k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go):
    # an Update manager is named with its apiVersion, an applier by name only.
    live.ok("POST", CMS, cm("ssa-conflict", a="1"), fieldManager="kubectl-create")
    resp = apply(live, f"{CMS}/ssa-conflict", cm("ssa-conflict", a="2"), "alice")
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.a'
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-create" using v1',
            "field": ".data.a",
        }
    ]
    # The same value is no conflict: both share the field.
    assert apply(live, f"{CMS}/ssa-conflict", cm("ssa-conflict", a="1"), "alice").status_code == 200
    # Two appliers, two fields: the message groups them by manager.
    apply(live, f"{CMS}/ssa-conflict", cm("ssa-conflict", a="1", b="1"), "bob")
    resp = apply(live, f"{CMS}/ssa-conflict", cm("ssa-conflict", a="9", b="9"), "carol")
    assert resp.status_code == 409
    assert resp.json()["message"] == (
        "Apply failed with 4 conflicts: "
        'conflicts with "alice":\n- .data.a\n'
        'conflicts with "bob":\n- .data.a\n- .data.b\n'
        'conflicts with "kubectl-create" using v1:\n- .data.a'
    )
    # force=true takes the fields over: the others lose them.
    forced = apply(live, f"{CMS}/ssa-conflict", cm("ssa-conflict", a="9", b="9"), "carol", force="true")
    assert forced.status_code == 200 and forced.json()["data"] == {"a": "9", "b": "9"}
    owners = {m["manager"]: m["fieldsV1"] for m in forced.json()["metadata"]["managedFields"]}
    assert owners["carol"] == {"f:data": {"f:a": {}, "f:b": {}}}
    assert "alice" not in owners and "bob" not in owners  # nothing left: their entries go
    assert owners["kubectl-create"] == {"f:data": {}}  # only the map itself, which it created


def test_list_map_keys_name_the_conflicting_port(live: Rest) -> None:
    # ServicePort is a list-map keyed by port and protocol (+listMapKey in staging/src/k8s.io/api/core/v1).
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ssa-svc"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    assert apply(live, f"{SVCS}/ssa-svc", svc, "alice").status_code == 201
    svc["spec"]["ports"][0]["targetPort"] = 9090
    resp = apply(live, f"{SVCS}/ssa-svc", svc, "bob")
    assert resp.status_code == 409
    assert resp.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "alice": .spec.ports[port=80,protocol="TCP"].targetPort'
    )


# --------------------------------------------------------------------------------- strategic merge patch


def test_strategic_merge_patch_puts_added_items_first(live: Rest) -> None:
    svc = {"metadata": {"name": "smp-order"}, "spec": {"ports": [{"name": "a", "port": 80}]}}
    live.ok("POST", SVCS, svc)
    out = live.ok("PATCH", f"{SVCS}/smp-order", {"spec": {"ports": [{"name": "b", "port": 81}]}}, SMP)
    assert [p["port"] for p in out["spec"]["ports"]] == [81, 80]
    deploy = {
        "metadata": {"name": "smp-order"},
        "spec": {
            "selector": {"matchLabels": {"app": "o"}},
            "template": {
                "metadata": {"labels": {"app": "o"}},
                "spec": {
                    "containers": [{"name": "one", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]
                },
            },
        },
    }
    live.ok("POST", DEPLOYS, deploy)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "two", "image": "redis"},
                        {"name": "one", "env": [{"name": "B", "value": "2"}]},
                    ]
                }
            }
        }
    }
    out = live.ok("PATCH", f"{DEPLOYS}/smp-order", patch, SMP)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["two", "one"]
    assert [e["name"] for e in containers[1]["env"]] == ["B", "A"]
