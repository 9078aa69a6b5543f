"""The lab's DaemonSet controller, pure: one pod per eligible node, rolling updates node by node."""

from __future__ import annotations

import itertools
from typing import Any

from lab.controllers import daemonset_plan

NODES = [
    {"metadata": {"name": n, "labels": {"kubernetes.io/os": "linux"}}, "spec": {}} for n in ("n1", "n2", "n3")
]


def daemonset(image: str = "ironlb:0.1.0", **template_spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "speaker", "namespace": "ns", "uid": "ds-uid", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "speaker"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "speaker"}},
                "spec": {"containers": [{"name": "s", "image": image}], **template_spec},
            },
        },
    }


def running(manifest: dict[str, Any], name: str, ready: bool = True) -> dict[str, Any]:
    pod = dict(manifest)
    pod["metadata"] = dict(manifest["metadata"], name=name, creationTimestamp="2026-01-01T00:00:00Z")
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return pod


def suffixes() -> Any:
    return (f"s{i}" for i in itertools.count())


def test_one_pod_per_eligible_node_owned_and_bound() -> None:
    ds = daemonset(nodeSelector={"kubernetes.io/os": "linux"})
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    labels = {"kubernetes.io/os": "linux"}
    tainted = {"metadata": {"name": "cp", "labels": labels}, "spec": {"taints": [taint]}}
    plan = daemonset_plan.plan(ds, [], [*NODES, tainted], suffixes())
    assert sorted(p["spec"]["nodeName"] for p in plan.create) == ["n1", "n2", "n3"]
    pod = plan.create[0]
    assert pod["metadata"]["name"].startswith("speaker-")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    labels = pod["metadata"]["labels"]
    assert labels["controller-revision-hash"] == daemonset_plan.template_hash(ds)
    assert labels["pod-template-generation"] == "2"
    tolerated = {t["key"] for t in pod["spec"]["tolerations"]}
    assert "node.kubernetes.io/not-ready" in tolerated and "node.kubernetes.io/unreachable" in tolerated
    assert plan.status["desiredNumberScheduled"] == 3 and plan.status["numberReady"] == 0


def test_a_template_change_rolls_one_node_at_a_time() -> None:
    old = daemonset()
    pods = [
        running(m, f"old{i}") for i, m in enumerate(daemonset_plan.plan(old, [], NODES, suffixes()).create)
    ]
    new = daemonset(image="ironlb:0.2.0")
    plan = daemonset_plan.plan(new, pods, NODES, suffixes())
    assert (len(plan.delete), plan.create) == (1, [])
    assert plan.status["updatedNumberScheduled"] == 0 and plan.status["numberAvailable"] == 3
    # The deleted pod is gone: its node gets the new template; the others wait for it to be ready.
    remaining = [p for p in pods if p["metadata"]["name"] not in plan.delete]
    plan = daemonset_plan.plan(new, remaining, NODES, suffixes())
    assert len(plan.create) == 1 and plan.delete == []
    replacement = running(plan.create[0], "new0", ready=False)
    plan = daemonset_plan.plan(new, [*remaining, replacement], NODES, suffixes())
    assert plan.create == [] and plan.delete == []
    ready = running(plan.create[0] if plan.create else replacement, "new0")
    plan = daemonset_plan.plan(new, [*remaining, ready], NODES, suffixes())
    assert len(plan.delete) == 1 and plan.status["updatedNumberScheduled"] == 1


def test_pods_on_nodes_that_no_longer_match_are_removed() -> None:
    ds = daemonset(nodeSelector={"role": "edge"})
    stray = running(daemonset_plan.pod_manifest(ds, "n1", "h", "x"), "stray")
    plan = daemonset_plan.plan(ds, [stray], NODES, suffixes())
    assert plan.delete == ["stray"] and plan.create == []
    assert plan.status["numberMisscheduled"] == 1 and plan.status["desiredNumberScheduled"] == 0
