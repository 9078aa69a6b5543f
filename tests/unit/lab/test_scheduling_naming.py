"""Pod placement and generated names (pure)."""

from __future__ import annotations

import random

from lab.controllers import naming, scheduling
from tests.unit.lab.helpers import node, pod


def test_spread_prefers_least_loaded_then_name() -> None:
    assert scheduling.spread(4, ["node1", "node2", "node3"], {"node1": 2}) == [
        "node2",
        "node3",
        "node2",
        "node3",
    ]
    assert scheduling.spread(2, [], {}) == [None, None]


def test_candidates_respect_ready_unschedulable_taints_and_selector() -> None:
    nodes = [
        node("a"),
        node("b", ready=False),
        node("c", spec={"unschedulable": True}),
        node("d", spec={"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}),
        node("e", labels={"disk": "ssd"}),
        {"metadata": {"name": "f"}},  # no status at all: not Ready
    ]
    assert scheduling.candidate_nodes(nodes, {}) == ["a", "e"]
    tolerant = {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    assert scheduling.candidate_nodes(nodes, tolerant) == ["a", "d", "e"]
    wrong_value = {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "y"}]}
    assert scheduling.candidate_nodes(nodes, wrong_value) == ["a", "e"]
    assert scheduling.candidate_nodes(nodes, {"nodeSelector": {"disk": "ssd"}}) == ["e"]


def test_pods_per_node_counts_only_live_pods() -> None:
    pods = [
        pod("a", node_name="n1"),
        pod("b", node_name="n1", terminating=True),
        pod("c", node_name="n2", phase="Succeeded"),
        pod("d", node_name=None),
        pod("e", node_name="n2"),
    ]
    assert scheduling.pods_per_node(pods) == {"n1": 1, "n2": 1}


def test_template_hash_looks_real_and_is_stable() -> None:
    template = {
        "metadata": {"labels": {"app": "nginx"}},
        "spec": {"containers": [{"name": "c1", "image": "x"}]},
    }
    first = naming.pod_template_hash(template)
    assert first == naming.pod_template_hash({"spec": template["spec"], "metadata": template["metadata"]})
    assert 1 <= len(first) <= 10
    assert set(first) <= set("456789bcdf")  # decimal digits mapped onto the safe alphabet
    assert naming.pod_template_hash(template, collision_count=1) != first
    changed = {**template, "spec": {"containers": [{"name": "c1", "image": "y"}]}}
    assert naming.pod_template_hash(changed) != first


def test_fnv32a_known_values() -> None:
    assert naming.fnv32a(b"") == 0x811C9DC5
    assert naming.fnv32a(b"a") == 0xE40C292C


def test_suffix_and_generate_name() -> None:
    suffix = naming.random_suffix(random.Random(1))
    assert len(suffix) == 5 and set(suffix) <= set(naming.SAFE_ALPHABET)
    assert naming.generate_name("web-", "abcde") == "web-abcde"
    long = naming.generate_name("x" * 80 + "-", "abcde")
    assert len(long) == 63 and long.endswith("abcde")


def test_which_pods_the_binder_takes() -> None:
    from lab.controllers.binder import needs_binding

    assert needs_binding(pod("a", node_name=None))
    assert not needs_binding(pod("b"))
    assert not needs_binding(pod("c", node_name=None, terminating=True))
    assert not needs_binding(pod("d", node_name=None, owner_uid="dep"))
    other = pod("e", node_name=None)
    other["spec"]["schedulerName"] = "my-scheduler"
    assert not needs_binding(other)
