"""Conformance: the strictness controllers and agents meet in kube-apiserver 1.36 (resourceVersion on PUT,
Lease times and durations, finalizers, immutable metadata, namespace termination, what DELETE answers,
Service names, pod and node defaulting), over the REST API. Each expected value cites its source."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.apiserver.rest import Rest, configmap

CMS = "/api/v1/namespaces/default/configmaps"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
MERGE = "application/merge-patch+json"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(live: Rest) -> Rest:
    live.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    return live


def widget(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, **meta}, "spec": {}}


def lease(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec}


def failure(resp: Any, code: int) -> dict[str, Any]:
    assert resp.status_code == code, resp.text
    body: dict[str, Any] = resp.json()
    return body


# ------------------------------------------------------------------------------------ resourceVersion


def test_put_of_a_lease_or_custom_resource_needs_a_resource_version(widgets: Rest) -> None:
    # genericregistry.Store.Update (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go):
    # without one, kinds whose strategy has AllowUnconditionalUpdate false (Lease, custom resources) get 422
    # on the resource, the uint64 0 printed by %#v as 0x0.
    widgets.ok("POST", LEASES, lease("rv-lease", holderIdentity="a"))
    body = failure(widgets.request("PUT", f"{LEASES}/rv-lease", lease("rv-lease", holderIdentity="b")), 422)
    assert body["message"] == (
        'leases.coordination.k8s.io "rv-lease" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    assert body["details"]["kind"] == "leases" and body["details"]["group"] == "coordination.k8s.io"
    widgets.ok("POST", WIDGETS, widget("rv-widget"))
    body = failure(widgets.request("PUT", f"{WIDGETS}/rv-widget", widget("rv-widget")), 422)
    assert body["message"] == (
        'widgets.example.com "rv-widget" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    # ConfigMaps allow the unconditional update.
    widgets.ok("POST", CMS, configmap("rv-cm", a="1"))
    assert widgets.ok("PUT", f"{CMS}/rv-cm", configmap("rv-cm", a="2"))["data"] == {"a": "2"}


# ---------------------------------------------------------------------------------------------- Lease


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (
            "2026-01-01T00:00:00Z",
            'parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as '
            '".000000"',
        ),
        (
            "2026-01-01T00:00:00.123456",
            'parsing time "2026-01-01T00:00:00.123456" as "2006-01-02T15:04:05.000000Z07:00": '
            'cannot parse "" as "Z07:00"',
        ),
    ],
)
def test_lease_times_need_microseconds_and_a_zone(live: Rest, value: str, detail: str) -> None:
    # metav1.MicroTime.UnmarshalJSON parses with RFC3339Micro
    # (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/micro_time.go); the create handler answers a decode
    # error with 400 "<Kind> in version ... cannot be handled as a <Kind>".
    body = failure(live.request("POST", LEASES, lease("time-bad", renewTime=value)), 400)
    assert body["message"] == f'Lease in version "v1" cannot be handled as a Lease: {detail}'


def test_lease_times_in_the_real_format_are_accepted(live: Rest) -> None:
    out = live.ok("POST", LEASES, lease("time-ok", renewTime="2026-01-01T00:00:00.000000+00:00"))
    assert out["spec"]["renewTime"] == "2026-01-01T00:00:00.000000+00:00"


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        ({"leaseDurationSeconds": 0}, "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        (
            {"leaseTransitions": -1},
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        ),
    ],
)
def test_lease_durations_must_be_positive(live: Rest, spec: dict[str, Any], detail: str) -> None:
    # ValidateLeaseSpec (pkg/apis/coordination/validation/validation.go).
    body = failure(live.request("POST", LEASES, lease("duration", **spec)), 422)
    assert body["message"] == f'Lease.coordination.k8s.io "duration" is invalid: {detail}'


# ----------------------------------------------------------------------------------------- finalizers


def test_finalizer_names_must_be_qualified(widgets: Rest) -> None:
    # validateKubeFinalizerName (pkg/apis/core/validation/validation.go) for built-in kinds.
    body = failure(
        widgets.request(
            "POST", CMS, dict(configmap("fin-bare"), metadata={"name": "fin-bare", "finalizers": ["cleanup"]})
        ),
        422,
    )
    assert body["message"] == (
        'ConfigMap "fin-bare" is invalid: metadata.finalizers[0]: Invalid value: "cleanup": '
        "name is neither a standard finalizer name nor is it fully qualified"
    )
    # IsQualifiedName (staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go).
    body = failure(
        widgets.request(
            "POST",
            CMS,
            dict(configmap("fin-slash"), metadata={"name": "fin-slash", "finalizers": ["example.com/"]}),
        ),
        422,
    )
    # An empty name part also fails the name regex: both causes, bracketed.
    bad = 'metadata.finalizers: Invalid value: "example.com/": name part '
    assert body["message"] == (
        f'ConfigMap "fin-slash" is invalid: [{bad}must be non-empty, {bad}must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')]"
    )
    for ok in ("example.com/cleanup", "kubernetes", "foregroundDeletion"):
        name = "fin-ok-" + re.sub("[^a-z]", "", ok.lower())
        widgets.ok("POST", CMS, dict(configmap(name), metadata={"name": name, "finalizers": [ok]}))
        widgets.ok("PATCH", f"{CMS}/{name}", {"metadata": {"finalizers": None}}, MERGE)
    # Custom resources only get a warning (apiextensions-apiserver pkg/registry/customresource/validator.go).
    resp = widgets.request("POST", WIDGETS, widget("fin-widget", finalizers=["widgets.example.com"]))
    assert resp.status_code == 201, resp.text
    assert resp.headers["Warning"] == (
        '299 - "metadata.finalizers: \\"widgets.example.com\\": prefer a domain-qualified finalizer name '
        'including a path (/) to avoid accidental conflicts with other finalizer writers"'
    )


def test_no_new_finalizer_on_an_object_being_deleted(live: Rest) -> None:
    # ValidateObjectMetaAccessorUpdate / ValidateNoNewFinalizers
    # (staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go).
    meta = {"name": "fin-dying", "finalizers": ["example.com/a"]}
    live.ok("POST", CMS, dict(configmap("fin-dying"), metadata=meta))
    pending = live.ok("DELETE", f"{CMS}/fin-dying")
    assert pending["metadata"]["deletionTimestamp"]  # waits for its finalizer: the object, not a Status
    patch = {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}}
    body = failure(live.request("PATCH", f"{CMS}/fin-dying", patch, MERGE), 422)
    assert body["message"] == (
        'ConfigMap "fin-dying" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if '
        'the object is being deleted, found new finalizers []string{"example.com/b"}'
    )
    live.ok("PATCH", f"{CMS}/fin-dying", {"metadata": {"finalizers": None}}, MERGE)
    assert live.request("GET", f"{CMS}/fin-dying").status_code == 404


# ------------------------------------------------------------------------------------- immutable meta


def test_patching_the_uid_is_refused(live: Rest) -> None:
    # rest.BeforeUpdate -> ValidateObjectMetaUpdate: ValidateImmutableField(uid).
    live.ok("POST", CMS, configmap("uid-cm"))
    patch = {"metadata": {"uid": "00000000-0000-0000-0000-000000000000"}}
    body = failure(live.request("PATCH", f"{CMS}/uid-cm", patch, MERGE), 422)
    assert body["message"] == (
        'ConfigMap "uid-cm" is invalid: metadata.uid: Invalid value: "00000000-0000-0000-0000-000000000000": '
        "field is immutable"
    )


# ----------------------------------------------------------------------------------------- namespaces


def test_a_deleted_namespace_stays_terminating_until_its_contents_are_gone(live: Rest) -> None:
    live.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    held = dict(configmap("held"), metadata={"name": "held", "finalizers": ["example.com/hold"]})
    live.ok("POST", "/api/v1/namespaces/doomed/configmaps", held)
    # The namespace REST Delete (pkg/registry/core/namespace/storage/storage.go): phase Terminating.
    ns = live.ok("DELETE", "/api/v1/namespaces/doomed")
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    # NamespaceLifecycle admission (plugin/pkg/admission/namespace/lifecycle/admission.go): 403.
    body = failure(live.request("POST", "/api/v1/namespaces/doomed/configmaps", configmap("late")), 403)
    assert body["message"] == (
        'configmaps "late" is forbidden: unable to create new content in namespace doomed because it is '
        "being terminated"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace doomed is being terminated",
            "field": "metadata.namespace",
        }
    ]
    # genericregistry.Store.Create: AlreadyExists, prefixed "object is being deleted: ".
    body = failure(live.request("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}}), 409)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'object is being deleted: namespaces "doomed" already exists'
    # Deleting it again while its finalizer is there: Conflict, the message with its two spaces.
    body = failure(live.request("DELETE", "/api/v1/namespaces/doomed"), 409)
    assert body["message"] == (
        'Operation cannot be fulfilled on namespaces "doomed": The system is ensuring all content is removed '
        "from this namespace.  Upon completion, this namespace will automatically be purged by the system."
    )
    live.ok("PATCH", "/api/v1/namespaces/doomed/configmaps/held", {"metadata": {"finalizers": None}}, MERGE)
    assert live.request("GET", "/api/v1/namespaces/doomed").status_code == 404


def test_delete_answers_a_status_or_the_object_as_the_real_storage_does(widgets: Rest) -> None:
    # genericregistry.Store.finalizeDelete: a Success Status naming the object, unless the storage sets
    # ReturnDeletedObject (services, pods, serviceaccounts, namespaces, PVs and PVCs).
    cm = widgets.ok("POST", CMS, configmap("del-cm"))
    assert widgets.ok("DELETE", f"{CMS}/del-cm") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "del-cm", "kind": "configmaps", "uid": cm["metadata"]["uid"]},
    }
    created = widgets.ok("POST", WIDGETS, widget("del-widget"))
    status = widgets.ok("DELETE", f"{WIDGETS}/del-widget")
    assert status["details"] == {
        "name": "del-widget",
        "group": "example.com",
        "kind": "widgets",
        "uid": created["metadata"]["uid"],
    }
    svc = {"metadata": {"name": "del-svc"}, "spec": {"ports": [{"port": 80}]}}
    widgets.ok("POST", "/api/v1/namespaces/default/services", svc)
    deleted = widgets.ok("DELETE", "/api/v1/namespaces/default/services/del-svc")
    assert deleted["kind"] == "Service" and deleted["metadata"]["name"] == "del-svc"


# ---------------------------------------------------------------------------------------------- names


def test_service_names_may_start_with_a_digit(live: Rest) -> None:
    # NameIsDNSLabel for Services since RelaxedServiceNameValidation is on by default (KEP-5311,
    # kubernetes/kubernetes#136389).
    svc = {"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}
    assert live.ok("POST", "/api/v1/namespaces/default/services", svc)["metadata"]["name"] == "1web"
    bad = {"metadata": {"name": "web.1"}, "spec": {"ports": [{"port": 80}]}}
    body = failure(live.request("POST", "/api/v1/namespaces/default/services", bad), 422)
    assert body["message"] == (
        'Service "web.1" is invalid: metadata.name: Invalid value: "web.1": a lowercase RFC 1123 label must '
        "consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
        "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )


# ------------------------------------------------------------------------------------------ defaulting


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec},
    }


def test_pods_get_the_default_service_account_and_its_token_volume(live: Rest) -> None:
    # The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount/admission.go):
    # serviceAccountName "default" (the serviceaccounts controller made it), and TokenVolumeSource mounted in
    # every container.
    assert (
        live.ok("GET", "/api/v1/namespaces/default/serviceaccounts/default")["metadata"]["name"] == "default"
    )
    out = live.ok("POST", "/api/v1/namespaces/default/pods", pod("sa-default"))
    spec = out["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    [volume] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[a-z0-9]{5}", volume["name"])
    assert volume["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    assert spec["containers"][0]["volumeMounts"] == [
        {
            "name": volume["name"],
            "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }
    ]
    plain = live.ok(
        "POST", "/api/v1/namespaces/default/pods", pod("sa-off", automountServiceAccountToken=False)
    )
    assert "volumes" not in plain["spec"]


def test_a_pod_naming_a_missing_service_account_is_forbidden(live: Rest) -> None:
    body = failure(
        live.request("POST", "/api/v1/namespaces/default/pods", pod("sa-missing", serviceAccountName="nope")),
        403,
    )
    assert body["message"] == (
        'pods "sa-missing" is forbidden: error looking up service account default/nope: '
        'serviceaccount "nope" not found'
    )


def test_node_pod_cidrs_follow_pod_cidr_and_back(live: Rest) -> None:
    # Convert_v1_NodeSpec_To_core_NodeSpec / Convert_core_NodeSpec_To_v1_NodeSpec
    # (pkg/apis/core/v1/conversion.go): podCIDRs is the primary field, podCIDR its first entry.
    one = live.ok(
        "POST", "/api/v1/nodes", {"metadata": {"name": "cidr-a"}, "spec": {"podCIDR": "10.244.1.0/24"}}
    )
    assert one["spec"]["podCIDRs"] == ["10.244.1.0/24"]
    two = live.ok(
        "POST",
        "/api/v1/nodes",
        {"metadata": {"name": "cidr-b"}, "spec": {"podCIDRs": ["10.244.2.0/24", "fd00:244:2::/64"]}},
    )
    assert two["spec"]["podCIDR"] == "10.244.2.0/24"
    # ValidateNodeUpdate: once set, podCIDRs do not change.
    body = failure(
        live.request("PATCH", "/api/v1/nodes/cidr-a", {"spec": {"podCIDRs": ["10.244.9.0/24"]}}, MERGE), 422
    )
    assert body["message"] == (
        'Node "cidr-a" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except '
        'from "" to valid'
    )


def test_label_keys_and_values_are_validated_with_the_real_wording(live: Rest) -> None:
    # ValidateLabels (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go):
    # IsQualifiedName for keys, IsValidLabelValue for values (pkg/util/validation/validation.go).
    body = dict(configmap("labels-bad"), metadata={"name": "labels-bad", "labels": {"bad key": "-x"}})
    resp = live.request("POST", CMS, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["message"] == (
        'ConfigMap "labels-bad" is invalid: [metadata.labels: Invalid value: "bad key": name part must '
        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), metadata.labels: Invalid value: \"-x\": a valid label "
        "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]"
    )
