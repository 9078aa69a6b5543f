"""The Deployment controller's decisions (pure): create, spread, scale down, roll out, status."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from lab.controllers import deployment_plan as dp
from tests.unit.lab.helpers import node, pod

NOW = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
NODES = [node("node1"), node("node2"), node("node3")]


def deployment(replicas: int = 2, image: str = "nginx:1.15-alpine", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "c1", "image": image, "ports": [{"containerPort": 80}]}]},
        },
    }
    base.update(spec)
    return {
        "metadata": {"name": "nginx-server1", "namespace": "default", "uid": "dep-uid", "generation": 3},
        "spec": base,
    }


def suffixes() -> Any:
    counter = itertools.count()
    return lambda: f"s{next(counter):04d}"


def owned(name: str, tmpl_hash: str, **kw: Any) -> dict[str, Any]:
    return pod(name, labels={"app": "nginx", "pod-template-hash": tmpl_hash}, owner_uid="dep-uid", **kw)


def test_creates_named_scheduled_owned_pods_spread_over_nodes() -> None:
    d = deployment(replicas=3)
    result = dp.plan(d, [], NODES, {"node1": 1}, NOW, suffixes())
    tmpl_hash = dp.template_hash(d)
    assert [p["metadata"]["name"] for p in result.create] == [
        f"nginx-server1-{tmpl_hash}-s0000",
        f"nginx-server1-{tmpl_hash}-s0001",
        f"nginx-server1-{tmpl_hash}-s0002",
    ]
    assert [p["spec"]["nodeName"] for p in result.create] == ["node2", "node3", "node1"]
    first = result.create[0]
    assert first["metadata"]["labels"] == {"app": "nginx", "pod-template-hash": tmpl_hash}
    assert first["metadata"]["generateName"] == f"nginx-server1-{tmpl_hash}-"
    ref = first["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "Deployment",
        "nginx-server1",
        "dep-uid",
        True,
    )
    assert first["spec"]["containers"][0]["image"] == "nginx:1.15-alpine"
    assert result.delete == []
    assert result.status["observedGeneration"] == 3
    assert "replicas" not in result.status  # zero counters are omitted like the real controller
    assert result.status["unavailableReplicas"] == 3


def test_no_ready_node_leaves_pods_unscheduled_until_a_node_is_ready() -> None:
    d = deployment(1)
    result = dp.plan(d, [], [node("node1", ready=False)], {}, NOW, suffixes())
    assert len(result.create) == 1 and "nodeName" not in result.create[0]["spec"]
    unscheduled = owned("u", dp.template_hash(d), node_name=None, ready=False)
    assert dp.plan(d, [unscheduled], [node("node1", ready=False)], {}, NOW, suffixes()).create == []
    later = dp.plan(d, [unscheduled], NODES, {}, NOW, suffixes())
    assert later.delete == ["u"]
    assert [p["spec"]["nodeName"] for p in later.create] == ["node1"]


def test_steady_state_reports_two_of_two_available() -> None:
    d = deployment(2)
    h = dp.template_hash(d)
    pods = [owned("a", h, node_name="node1"), owned("b", h, node_name="node2")]
    result = dp.plan(d, pods, NODES, {"node1": 1, "node2": 1}, NOW, suffixes())
    assert result.create == [] and result.delete == []
    s = result.status
    assert (s["replicas"], s["readyReplicas"], s["availableReplicas"], s["updatedReplicas"]) == (2, 2, 2, 2)
    conditions = {c["type"]: c for c in s["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    # Writing the same status again changes nothing but timestamps.
    again = dp.plan({**d, "status": s}, pods, NODES, {}, NOW.replace(minute=9), suffixes())
    assert not dp.status_changed(s, again.status)
    assert (
        again.status["conditions"][0]["lastTransitionTime"] == conditions["Available"]["lastTransitionTime"]
    )


def test_scale_down_removes_not_ready_then_busiest_node_pods() -> None:
    d = deployment(1)
    h = dp.template_hash(d)
    pods = [
        owned("a", h, node_name="node1", created="2026-01-01T00:00:00Z"),
        owned("b", h, node_name="node1", created="2026-01-01T00:00:05Z"),
        owned("c", h, node_name="node2", ready=False),
    ]
    result = dp.plan(d, pods, NODES, {"node1": 2, "node2": 1}, NOW, suffixes())
    assert result.delete == ["c", "b"]
    assert result.create == []


def test_terminating_and_finished_pods_are_replaced() -> None:
    d = deployment(2)
    h = dp.template_hash(d)
    pods = [owned("a", h), owned("b", h, terminating=True), owned("c", h, phase="Failed")]
    result = dp.plan(d, pods, NODES, {}, NOW, suffixes())
    assert len(result.create) == 1
    assert result.delete == ["c"]
    assert result.status["replicas"] == 1


def test_template_change_surges_and_keeps_old_pods_until_new_are_ready() -> None:
    old = deployment(2, image="nginx:1.15")
    old_hash = dp.template_hash(old)
    new = deployment(2, image="nginx:1.16")
    new_hash = dp.template_hash(new)
    assert new_hash != old_hash
    pods = [owned("o1", old_hash), owned("o2", old_hash)]
    step1 = dp.plan(new, pods, NODES, {}, NOW, suffixes())
    assert len(step1.create) == 2 and step1.delete == []
    assert all(p["metadata"]["labels"]["pod-template-hash"] == new_hash for p in step1.create)
    # One new pod ready: one old pod can go.
    pods += [owned("n1", new_hash), owned("n2", new_hash, ready=False)]
    step2 = dp.plan(new, pods, NODES, {}, NOW, suffixes())
    assert step2.create == [] and len(step2.delete) == 1 and step2.delete[0] in ("o1", "o2")
    assert step2.status["updatedReplicas"] == 2
    progressing = {c["type"]: c for c in step2.status["conditions"]}["Progressing"]
    assert progressing["reason"] == "ReplicaSetUpdated"


def test_recreate_deletes_old_before_creating() -> None:
    d = deployment(2, image="v2", strategy={"type": "Recreate"})
    old_pods = [owned("o1", "oldhash"), owned("o2", "oldhash")]
    first = dp.plan(d, old_pods, NODES, {}, NOW, suffixes())
    assert sorted(first.delete) == ["o1", "o2"] and first.create == []
    going = [owned("o1", "oldhash", terminating=True)]
    assert dp.plan(d, going, NODES, {}, NOW, suffixes()).create == []
    assert len(dp.plan(d, [], NODES, {}, NOW, suffixes()).create) == 2


def test_paused_only_reports_status() -> None:
    result = dp.plan(deployment(3, paused=True), [], NODES, {}, NOW, suffixes())
    assert result.create == [] and result.delete == []


def test_min_ready_seconds_delays_availability() -> None:
    d = deployment(1, minReadySeconds=600)
    h = dp.template_hash(d)
    p = owned("a", h)
    p["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:04:00Z"
    status = dp.plan(d, [p], NODES, {}, NOW, suffixes()).status
    assert status["readyReplicas"] == 1 and "availableReplicas" not in status


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"replicas": "two"}, "spec.replicas"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        ({"template": None}, "spec.template.spec"),
        ({"strategy": {"rollingUpdate": {"maxUnavailable": "lots"}}}, "maxUnavailable"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    d = deployment()
    d["spec"].update(spec)
    with pytest.raises(dp.DeploymentSpecError, match=message):
        dp.plan(d, [], NODES, {}, NOW, suffixes())
