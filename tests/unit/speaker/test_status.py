"""ServiceL2Status bookkeeping as MetalLB's reconciler does it (create, patch, delete), and the janitor."""

from __future__ import annotations

from typing import Any

from speaker.status import Create, Delete, PatchStatus, actions_for, desired_status, node_of, service_of

NS = "metallb-system"


def obj(
    name: str, node: str, service: str = "default/web", status: dict[str, Any] | None = None
) -> dict[str, Any]:
    namespace, _, service_name = service.partition("/")
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {
                "metallb.io/node": node,
                "metallb.io/service-name": service_name,
                "metallb.io/service-namespace": namespace,
            },
        },
        "status": status or {},
    }


def test_labels() -> None:
    assert service_of(obj("l2-a", "node1")) == "default/web" and node_of(obj("l2-a", "node1")) == "node1"
    assert service_of({"metadata": {}}) is None


def test_owner_creates_one_and_removes_the_previous_owners() -> None:
    actions = actions_for("default/web", "node2", ("eth1",), [obj("l2-old", "node3")], namespace=NS)
    assert actions[0] == Delete("l2-old", "uid-l2-old", "not announced from that node now")
    create = actions[1]
    assert isinstance(create, Create)
    assert create.body["metadata"]["generateName"] == "l2-"
    assert create.body["metadata"]["labels"] == {
        "metallb.io/node": "node2",
        "metallb.io/service-name": "web",
        "metallb.io/service-namespace": "default",
    }
    assert "ownerReferences" not in create.body["metadata"]
    assert create.status == {
        "node": "node2",
        "serviceName": "web",
        "serviceNamespace": "default",
        "interfaces": [{"name": "eth1"}],
    }


def test_dual_stack_owners_keep_each_others_objects() -> None:
    theirs = obj("l2-v6", "node3")
    actions = actions_for(
        "default/web", "node2", ("eth1",), [theirs], namespace=NS, owners={"node2", "node3"}
    )
    assert [type(a) for a in actions] == [Create]


def test_up_to_date_object_needs_nothing_and_a_changed_one_a_patch() -> None:
    current = obj("l2-a", "node2", status=desired_status("node2", "default/web", ["eth1"]))
    assert actions_for("default/web", "node2", ("eth1",), [current], namespace=NS) == []
    assert actions_for("default/web", "node2", ("eth1", "bond0"), [current], namespace=NS) == [
        PatchStatus("l2-a", desired_status("node2", "default/web", ["bond0", "eth1"]))
    ]
    duplicate = obj("l2-b", "node2")
    assert Delete("l2-b", "uid-l2-b", "duplicate") in actions_for(
        "default/web", "node2", ("eth1",), [current, duplicate], namespace=NS
    )


def test_a_speaker_that_stops_announcing_deletes_only_its_own() -> None:
    existing = [obj("l2-a", "node2"), obj("l2-b", "node3")]
    assert actions_for("default/web", "node2", None, existing, namespace=NS) == [
        Delete("l2-a", "uid-l2-a", "not announced from this node")
    ]


def test_the_janitor_removes_what_dead_speakers_and_deleted_services_left() -> None:
    existing = [obj("l2-b", "node3"), obj("l2-c", "node1")]
    actions = actions_for(
        "default/web",
        "node2",
        None,
        existing,
        namespace=NS,
        janitor=True,
        alive=frozenset({"node1", "node2"}),
    )
    assert actions == [Delete("l2-b", "uid-l2-b", "the speaker of node 'node3' is gone")]
    gone = actions_for(
        "default/web", "node2", None, existing, namespace=NS, janitor=True, service_exists=False
    )
    assert [a.name for a in gone if isinstance(a, Delete)] == ["l2-b", "l2-c"]


def test_owner_reference_to_the_speaker_pod() -> None:
    owner = {"name": "speaker-x", "uid": "pod-uid"}
    (create,) = actions_for("default/web", "node2", ("eth1",), [], namespace=NS, owner=owner)
    assert isinstance(create, Create)
    assert create.body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "speaker-x", "uid": "pod-uid"}
    ]
