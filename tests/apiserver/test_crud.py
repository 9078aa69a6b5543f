"""REST semantics over HTTP: CRUD, conflicts, generation, selectors, paging, patches, status subresources,
finalizers, dry runs, deletecollection, namespaces and garbage collection."""

from __future__ import annotations

import json
from typing import Any

from tests.apiserver.rest import Rest, configmap

CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
SVCS = "/api/v1/namespaces/default/services"


def deployment(name: str, image: str = "nginx", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


def test_create_get_update_delete_with_resource_versions(rest: Rest) -> None:
    created = rest.ok("POST", CMS, configmap("a", x="1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["namespace"] == "default"
    rv1 = int(meta["resourceVersion"])
    got = rest.ok("GET", f"{CMS}/a")
    assert got == created
    got["data"]["x"] = "2"
    updated = rest.ok("PUT", f"{CMS}/a", got)
    assert int(updated["metadata"]["resourceVersion"]) > rv1
    assert updated["metadata"]["uid"] == meta["uid"]
    # A stale resourceVersion: 409 Conflict with the real message.
    got["data"]["x"] = "3"
    stale = rest.request("PUT", f"{CMS}/a", got)
    assert stale.status_code == 409
    status = stale.json()
    assert status["kind"] == "Status" and status["reason"] == "Conflict"
    assert (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified' in status["message"]
    )
    # Without a resourceVersion the update is unconditional.
    del got["metadata"]["resourceVersion"]
    assert rest.ok("PUT", f"{CMS}/a", got)["data"]["x"] == "3"
    # A no-op update keeps the resourceVersion.
    current = rest.ok("GET", f"{CMS}/a")
    assert (
        rest.ok("PUT", f"{CMS}/a", current)["metadata"]["resourceVersion"]
        == current["metadata"]["resourceVersion"]
    )
    again = rest.request("POST", CMS, configmap("a"))
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    assert again.json()["message"] == 'configmaps "a" already exists'
    deleted = rest.ok("DELETE", f"{CMS}/a")
    # ConfigMaps answer a DELETE with a Success Status (genericregistry.Store.finalizeDelete).
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "a"
    missing = rest.request("GET", f"{CMS}/a")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "a" not found',
        "reason": "NotFound",
        "details": {"name": "a", "kind": "configmaps"},
        "code": 404,
    }


def test_resource_version_is_store_wide_and_monotonic(rest: Rest) -> None:
    a = rest.ok("POST", CMS, configmap("a"))
    d = rest.ok("POST", DEPLOYS, deployment("d"))
    b = rest.ok("POST", CMS, configmap("b"))
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, d, b)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listed = rest.ok("GET", CMS)
    assert int(listed["metadata"]["resourceVersion"]) >= rvs[-1]
    assert listed["kind"] == "ConfigMapList"


def test_generation_bumps_on_spec_changes_only(rest: Rest) -> None:
    d = rest.ok("POST", DEPLOYS, deployment("web"))
    assert d["metadata"]["generation"] == 1
    d["metadata"]["labels"]["extra"] = "yes"
    d = rest.ok("PUT", f"{DEPLOYS}/web", d)
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 3
    d = rest.ok("PUT", f"{DEPLOYS}/web", d)
    assert d["metadata"]["generation"] == 2


def test_status_subresource_isolation(rest: Rest) -> None:
    d = rest.ok("POST", DEPLOYS, {**deployment("web"), "status": {"replicas": 9}})
    assert "replicas" not in d.get("status", {})  # status on create is dropped
    d["status"] = {"replicas": 5}
    d["spec"]["replicas"] = 2
    d = rest.ok("PUT", f"{DEPLOYS}/web", d)
    assert d["spec"]["replicas"] == 2 and d.get("status", {}).get("replicas") is None
    d["status"] = {"replicas": 5, "readyReplicas": 1}
    d["spec"]["replicas"] = 7
    d = rest.ok("PUT", f"{DEPLOYS}/web/status", d)
    assert d["status"]["replicas"] == 5 and d["spec"]["replicas"] == 2
    d = rest.ok(
        "PATCH",
        f"{DEPLOYS}/web/status",
        {"status": {"readyReplicas": 2}, "spec": {"replicas": 9}},
        content_type="application/merge-patch+json",
    )
    assert d["status"] == {"replicas": 5, "readyReplicas": 2} and d["spec"]["replicas"] == 2
    assert d["metadata"]["generation"] == 2


def test_three_patch_types(rest: Rest) -> None:
    rest.ok("POST", DEPLOYS, deployment("web"))
    merged = rest.ok(
        "PATCH",
        f"{DEPLOYS}/web",
        {"metadata": {"labels": {"tier": "front"}}},
        content_type="application/merge-patch+json",
    )
    assert merged["metadata"]["labels"] == {"app": "web", "tier": "front"}
    jp = rest.ok(
        "PATCH",
        f"{DEPLOYS}/web",
        [{"op": "replace", "path": "/spec/replicas", "value": 4}],
        content_type="application/json-patch+json",
    )
    assert jp["spec"]["replicas"] == 4
    failed = rest.request(
        "PATCH",
        f"{DEPLOYS}/web",
        [{"op": "test", "path": "/spec/replicas", "value": 1}],
        content_type="application/json-patch+json",
    )
    assert failed.status_code == 422
    smp = rest.ok(
        "PATCH",
        f"{DEPLOYS}/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}},
        content_type="application/strategic-merge-patch+json",
    )
    names = [c["name"] for c in smp["spec"]["template"]["spec"]["containers"]]
    assert sorted(names) == ["c", "side"]  # merged by name, not replaced
    stale = rest.request(
        "PATCH",
        f"{DEPLOYS}/web",
        {"metadata": {"resourceVersion": "1"}},
        content_type="application/merge-patch+json",
    )
    assert stale.status_code == 409
    bad = rest.request("PATCH", f"{DEPLOYS}/web", {}, content_type="text/plain")
    assert bad.status_code == 415


def test_label_and_field_selectors_and_paging(rest: Rest) -> None:
    for i in range(7):
        rest.ok("POST", CMS, configmap(f"cm{i}", labels={"app": "a" if i % 2 else "b", "i": str(i)}))

    def names(**params: str) -> list[str]:
        return [o["metadata"]["name"] for o in rest.ok("GET", CMS, **params)["items"]]

    assert names(labelSelector="app=a") == ["cm1", "cm3", "cm5"]
    assert names(labelSelector="app==b,i!=0") == ["cm2", "cm4", "cm6"]
    assert names(labelSelector="i in (1,2)") == ["cm1", "cm2"]
    assert names(labelSelector="i notin (1,2),app=a") == ["cm3", "cm5"]
    assert names(labelSelector="app") == [f"cm{i}" for i in range(7)]
    assert names(labelSelector="!app") == []
    assert names(fieldSelector="metadata.name=cm4") == ["cm4"]
    assert names(fieldSelector="metadata.name!=cm4,metadata.namespace=default") == [
        "cm0",
        "cm1",
        "cm2",
        "cm3",
        "cm5",
        "cm6",
    ]
    assert rest.request("GET", CMS, labelSelector="a b c").status_code == 400
    page = rest.ok("GET", CMS, limit="3")
    assert [o["metadata"]["name"] for o in page["items"]] == ["cm0", "cm1", "cm2"]
    assert page["metadata"]["remainingItemCount"] == 4
    seen = [o["metadata"]["name"] for o in page["items"]]
    while page["metadata"].get("continue"):
        page = rest.ok("GET", CMS, limit="3", **{"continue": page["metadata"]["continue"]})
        seen += [o["metadata"]["name"] for o in page["items"]]
    assert seen == [f"cm{i}" for i in range(7)]
    all_ns = rest.ok("GET", "/api/v1/configmaps", fieldSelector="metadata.namespace=default")
    assert len(all_ns["items"]) == 7


def test_dry_run_and_deletecollection(rest: Rest) -> None:
    dry = rest.ok("POST", CMS, configmap("ghost"), dryRun="All")
    assert dry["metadata"]["name"] == "ghost"
    assert rest.request("GET", f"{CMS}/ghost").status_code == 404
    for i in range(4):
        rest.ok("POST", CMS, configmap(f"c{i}", labels={"del": "yes" if i < 3 else "no"}))
    rest.ok("DELETE", f"{CMS}/c0", dryRun="All")
    assert rest.request("GET", f"{CMS}/c0").status_code == 200
    gone = rest.ok("DELETE", CMS, labelSelector="del=yes")
    assert sorted(o["metadata"]["name"] for o in gone["items"]) == ["c0", "c1", "c2"]
    assert [o["metadata"]["name"] for o in rest.ok("GET", CMS)["items"]] == ["c3"]


def test_finalizers_and_deletion_timestamp(rest: Rest) -> None:
    rest.ok("POST", CMS, {**configmap("f"), "metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    marked = rest.ok("DELETE", f"{CMS}/f")
    assert marked["metadata"]["deletionTimestamp"]
    still = rest.ok("GET", f"{CMS}/f")
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    # Removing the last finalizer really deletes it.
    rest.ok(
        "PATCH", f"{CMS}/f", {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json"
    )
    assert rest.request("GET", f"{CMS}/f").status_code == 404


def test_delete_preconditions(rest: Rest) -> None:
    cm = rest.ok("POST", CMS, configmap("p"))
    wrong = rest.request(
        "DELETE", f"{CMS}/p", {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "nope"}}
    )
    assert (
        wrong.status_code == 409
        and "Precondition failed: UID in precondition: nope" in wrong.json()["message"]
    )
    rest.ok("DELETE", f"{CMS}/p", {"preconditions": {"uid": cm["metadata"]["uid"]}})


def test_namespace_lifecycle(rest: Rest) -> None:
    rest.ok(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ilbt"}}
    )
    rest.ok(
        "POST",
        "/api/v1/namespaces/ilbt/configmaps",
        {**configmap("held"), "metadata": {"name": "held", "finalizers": ["example.com/x"]}},
    )
    rest.ok("POST", "/api/v1/namespaces/ilbt/configmaps", configmap("plain"))
    missing = rest.request("POST", "/api/v1/namespaces/nope/configmaps", configmap("x"))
    assert missing.status_code == 404 and missing.json()["message"] == 'namespaces "nope" not found'
    ns = rest.ok("DELETE", "/api/v1/namespaces/ilbt")
    assert ns["status"]["phase"] == "Terminating"
    assert rest.request("GET", "/api/v1/namespaces/ilbt/configmaps/plain").status_code == 404
    refused = rest.request("POST", "/api/v1/namespaces/ilbt/configmaps", configmap("late"))
    assert refused.status_code == 403
    rest.ok(
        "PATCH",
        "/api/v1/namespaces/ilbt/configmaps/held",
        {"metadata": {"finalizers": []}},
        content_type="application/merge-patch+json",
    )
    assert rest.request("GET", "/api/v1/namespaces/ilbt").status_code == 404


def test_owner_reference_garbage_collection(rest: Rest) -> None:
    owner = rest.ok("POST", DEPLOYS, deployment("own"))
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "own", "uid": owner["metadata"]["uid"]}
    rest.ok("POST", CMS, {**configmap("dep"), "metadata": {"name": "dep", "ownerReferences": [ref]}})
    rest.ok("DELETE", f"{DEPLOYS}/own")
    assert rest.request("GET", f"{CMS}/dep").status_code == 404
    owner = rest.ok("POST", DEPLOYS, deployment("own2"))
    ref = {**ref, "name": "own2", "uid": owner["metadata"]["uid"]}
    rest.ok("POST", CMS, {**configmap("orphan"), "metadata": {"name": "orphan", "ownerReferences": [ref]}})
    rest.ok("DELETE", f"{DEPLOYS}/own2", propagationPolicy="Orphan")
    assert "ownerReferences" not in rest.ok("GET", f"{CMS}/orphan")["metadata"]


def test_scale_subresource(rest: Rest) -> None:
    rest.ok("POST", DEPLOYS, deployment("s", replicas=2))
    scale = rest.ok("GET", f"{DEPLOYS}/s/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    scale["spec"]["replicas"] = 5
    rest.ok("PUT", f"{DEPLOYS}/s/scale", scale)
    assert rest.ok("GET", f"{DEPLOYS}/s")["spec"]["replicas"] == 5


def test_endpoints_deprecation_warning(rest: Rest) -> None:
    resp = rest.request("GET", "/api/v1/namespaces/default/endpoints")
    assert resp.status_code == 200
    assert resp.headers["Warning"] == (
        '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'
    )


def test_discovery_documents(rest: Rest) -> None:
    assert rest.ok("GET", "/api")["versions"] == ["v1"]
    core = {r["name"]: r for r in rest.ok("GET", "/api/v1")["resources"]}
    assert core["services"]["shortNames"] == ["svc"] and "services/status" in core
    groups = {g["name"] for g in rest.ok("GET", "/apis")["groups"]}
    assert {
        "apps",
        "discovery.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
    } <= groups
    apps = {r["name"] for r in rest.ok("GET", "/apis/apps/v1")["resources"]}
    assert {"deployments", "deployments/status", "deployments/scale", "daemonsets"} <= apps
    assert rest.ok("GET", "/version")["major"] == "1"
    assert rest.request("GET", "/healthz").text == "ok"
    assert rest.request("GET", "/apis/nope.example.com/v1").status_code == 404


def test_services_allocated_through_admission(rest: Rest) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}},
    }
    created = rest.ok("POST", SVCS, svc)
    assert created["spec"]["clusterIP"].startswith("10.")
    assert 30000 <= created["spec"]["ports"][0]["nodePort"] <= 32767
    status = rest.ok(
        "PATCH",
        f"{SVCS}/lb/status",
        {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}},
        content_type="application/merge-patch+json",
    )
    assert status["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10", "ipMode": "VIP"}]
    kubernetes = rest.ok("GET", f"{SVCS}/kubernetes")
    assert kubernetes["spec"]["clusterIP"] == "10.96.0.1"
    dup = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dup"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]},
    }
    assert rest.request("POST", SVCS, json.dumps(dup)).status_code == 422


def test_core_and_events_k8s_io_events(rest: Rest) -> None:
    core = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
        "reason": "IPAllocated",
        "message": "Assigned IP 192.0.2.10",
        "type": "Normal",
    }
    rest.ok("POST", "/api/v1/namespaces/default/events", core)
    other = {**core, "metadata": {"name": "db.1"}, "involvedObject": {"kind": "Service", "name": "db"}}
    rest.ok("POST", "/api/v1/namespaces/default/events", other)
    found = rest.ok(
        "GET", "/api/v1/namespaces/default/events", fieldSelector="involvedObject.name=web,type=Normal"
    )
    assert [e["metadata"]["name"] for e in found["items"]] == ["web.1"]
    new = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web.2"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "ironlb.io/controller",
        "reportingInstance": "controller-0",
        "action": "Allocate",
        "reason": "IPAllocated",
        "regarding": {"kind": "Service", "name": "web", "namespace": "default"},
        "type": "Normal",
    }
    rest.ok("POST", "/apis/events.k8s.io/v1/namespaces/default/events", new)
    listed = rest.ok("GET", "/apis/events.k8s.io/v1/namespaces/default/events")
    assert [e["metadata"]["name"] for e in listed["items"]] == ["web.2"]


def test_metadata_validation(rest: Rest) -> None:
    bad_name = rest.request("POST", CMS, configmap("Bad_Name"))
    assert bad_name.status_code == 422
    assert bad_name.json()["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain"
    )
    ns = rest.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}
    )
    assert ns.status_code == 422 and "RFC 1123 label" in ns.json()["message"]
    labels = rest.request("POST", CMS, configmap("ok", labels={"bad key!": "x"}))
    assert labels.status_code == 422 and labels.json()["details"]["causes"][0]["field"] == "metadata.labels"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:controller:ilbt"},
        "rules": [],
    }
    rest.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)


def test_system_namespaces_cannot_be_deleted(rest: Rest) -> None:
    resp = rest.request("DELETE", "/api/v1/namespaces/default")
    assert resp.status_code == 403
    assert resp.json()["message"] == 'namespaces "default" is forbidden: this namespace may not be deleted'
    assert rest.ok("GET", "/api/v1/namespaces/default")["status"]["phase"] == "Active"


def test_pod_binding_subresource(rest: Rest) -> None:
    pods = "/api/v1/namespaces/default/pods"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    rest.ok("POST", pods, pod)
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "annotations": {"a": "b"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node1"},
    }
    done = rest.request("POST", f"{pods}/p/binding", binding)
    assert done.status_code == 201 and done.json()["status"] == "Success"
    bound = rest.ok("GET", f"{pods}/p")
    assert bound["spec"]["nodeName"] == "node1" and bound["metadata"]["annotations"] == {"a": "b"}
    scheduled = [c for c in bound["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"
    again = rest.request("POST", f"{pods}/p/binding", binding)
    assert again.status_code == 409 and 'already assigned to node "node1"' in again.json()["message"]
    resources = {r["name"]: r for r in rest.ok("GET", "/api/v1")["resources"]}
    assert resources["pods/binding"]["verbs"] == ["create"]


def test_bound_pods_are_deleted_gracefully(rest: Rest) -> None:
    """As the real storage: a pod on a node stays, terminating, until its kubelet deletes it with grace 0;
    an unbound pod goes at once."""
    pods = "/api/v1/namespaces/default/pods"

    def pod(name: str, **spec: Any) -> dict[str, Any]:
        body = {"containers": [{"name": "c", "image": "busybox"}], **spec}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}

    rest.ok("POST", pods, pod("bound", nodeName="node1", terminationGracePeriodSeconds=45))
    marked = rest.ok("DELETE", f"{pods}/bound")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 45 and marked["metadata"]["deletionTimestamp"]
    assert rest.ok("GET", f"{pods}/bound")["metadata"]["deletionGracePeriodSeconds"] == 45
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    rest.ok("DELETE", f"{pods}/bound", options)
    assert rest.request("GET", f"{pods}/bound").status_code == 404
    rest.ok("POST", pods, pod("forced", nodeName="node1"))
    rest.ok("DELETE", f"{pods}/forced", gracePeriodSeconds="0")
    assert rest.request("GET", f"{pods}/forced").status_code == 404
    rest.ok("POST", pods, pod("unbound"))
    rest.ok("DELETE", f"{pods}/unbound")
    assert rest.request("GET", f"{pods}/unbound").status_code == 404
