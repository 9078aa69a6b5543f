"""Unit tests of lab.apiserver.patch: RFC 7386, RFC 6902 and Kubernetes strategic merge patch.

The strategic merge cases follow Kubernetes' own documentation
("Update API Objects in Place Using kubectl patch")
and the strategic-merge-patch design document (directives $patch, $retainKeys, $setElementOrder,
$deleteFromPrimitiveList).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.apiserver.errors import ApiError
from lab.apiserver.patch import (
    JsonPatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    supports_strategic_merge,
)

# ----------------------------------------------------------------------------------------------- merge patch


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        # The examples of RFC 7386 appendix A.
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_modify_inputs() -> None:
    target = {"a": {"b": 1}}
    patch = {"a": {"c": 2}}
    merge_patch(target, patch)
    assert target == {"a": {"b": 1}}
    assert patch == {"a": {"c": 2}}


def test_merge_patch_status_ingress_replaces_list() -> None:
    svc = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}]}}}
    out = merge_patch(svc, {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.90"}]}}})
    assert out == {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.90"}]}}}


# ------------------------------------------------------------------------------------------------ json patch


def test_json_patch_rfc6902_operations() -> None:
    doc = {"foo": ["bar", "baz"], "obj": {"a": 1}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "replace", "path": "/obj/a", "value": 2},
            {"op": "copy", "from": "/obj", "path": "/copy"},
            {"op": "move", "from": "/foo/0", "path": "/first"},
            {"op": "remove", "path": "/obj"},
            {"op": "test", "path": "/copy/a", "value": 2},
            {"op": "add", "path": "/a~1b", "value": "slash"},
            {"op": "add", "path": "/m~0n", "value": "tilde"},
        ],
    )
    assert out == {
        "foo": ["qux", "baz", "end"],
        "copy": {"a": 2},
        "first": "bar",
        "a/b": "slash",
        "m~n": "tilde",
    }
    assert doc == {"foo": ["bar", "baz"], "obj": {"a": 1}}, "the input must stay untouched"


def test_json_patch_failed_test_is_422_and_atomic() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}}
    with pytest.raises(ApiError) as info:
        json_patch(
            doc,
            [
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "test", "path": "/metadata/labels/a", "value": "other"},
            ],
        )
    assert info.value.code == 422
    assert info.value.message == "the server rejected our request due to an error in our request"
    assert isinstance(info.value, JsonPatchError)
    assert info.value.detail == "testing value /metadata/labels/a failed: test failed"
    assert info.value.status()["message"] == "the server rejected our request due to an error in our request"
    assert doc == {"metadata": {"labels": {"a": "1"}}}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/missing/child", "value": 1}],
        [{"op": "add", "path": "/list/5", "value": 1}],
        [{"op": "remove", "path": "/list/01"}],
        [{"op": "add", "path": "nolead", "value": 1}],
        [{"op": "frobnicate", "path": "/list"}],
        [{"op": "add", "path": "/x"}],
        [{"op": "move", "from": "/obj", "path": "/obj/inner"}],
    ],
)
def test_json_patch_bad_paths_are_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(ApiError) as info:
        json_patch({"list": [1, 2], "obj": {}}, ops)
    assert info.value.code == 422


def test_json_patch_replace_whole_document_and_list_element() -> None:
    assert json_patch({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}]) == {"b": 2}
    assert json_patch({"l": [1, 2, 3]}, [{"op": "replace", "path": "/l/1", "value": 9}]) == {"l": [1, 9, 3]}
    assert json_patch({"l": [1, 2, 3]}, [{"op": "remove", "path": "/l/0"}]) == {"l": [2, 3]}


# ---------------------------------------------------------------------------------- strategic merge patch


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": containers, **spec},
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        },
    }


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def test_smp_docs_example_adds_a_container_by_name() -> None:
    # kubernetes.io "Use a strategic merge patch to update a Deployment": the patch's container is merged in,
    # and the docs' output lists it first (mergeSlice's normalizeElementOrder puts added items first).
    original = deployment([{"name": "patch-demo-ctr", "image": "nginx"}])
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}
    out = strategic_merge_patch(original, patch, "apps", "Deployment")
    assert containers_of(out) == [
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"},
    ]
    # The same patch applied as a JSON merge patch replaces the list (the documented contrast).
    assert containers_of(merge_patch(original, patch)) == [{"name": "patch-demo-ctr-2", "image": "redis"}]


def test_smp_docs_example_tolerations_have_no_merge_strategy_and_are_replaced() -> None:
    original = deployment(
        [{"name": "c", "image": "nginx"}],
        tolerations=[{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
    )
    patch = {"spec": {"template": {"spec": {"tolerations": [{"effect": "NoSchedule", "key": "disktype"}]}}}}
    out = strategic_merge_patch(original, patch, "apps", "Deployment")
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"effect": "NoSchedule", "key": "disktype"}]


def test_smp_docs_example_retain_keys_clears_rolling_update() -> None:
    # "Use strategic merge patch to update a Deployment using the retainKeys strategy".
    original = deployment([{"name": "c", "image": "nginx"}])
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch(original, patch, "apps", "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # Without the directive the old rollingUpdate stays (the problem the docs describe).
    out2 = strategic_merge_patch(original, {"spec": {"strategy": {"type": "Recreate"}}}, "apps", "Deployment")
    assert out2["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


def test_smp_merges_container_ports_env_and_volume_mounts_by_their_keys() -> None:
    original = deployment(
        [
            {
                "name": "web",
                "image": "nginx:1.15",
                "ports": [
                    {"containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 443, "protocol": "TCP"},
                ],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.16",
                            "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}],
                            "env": [{"name": "B", "value": "two"}, {"name": "A", "$patch": "delete"}],
                            "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                        }
                    ]
                }
            }
        }
    }
    (web,) = containers_of(strategic_merge_patch(original, patch, "apps", "Deployment"))
    assert web["image"] == "nginx:1.16"
    assert web["ports"] == [
        {"containerPort": 80, "protocol": "TCP"},
        {"containerPort": 443, "protocol": "TCP", "name": "https"},
        {"containerPort": 8080},
    ]
    assert web["env"] == [{"name": "B", "value": "two"}]
    assert web["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]


def test_smp_patch_replace_directive_in_list_and_map() -> None:
    original = deployment([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}}
    }
    assert containers_of(strategic_merge_patch(original, patch, "apps", "Deployment")) == [
        {"name": "c", "image": "z"}
    ]
    patch2 = {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}
    out = strategic_merge_patch(original, patch2, "apps", "Deployment")
    assert out["metadata"]["labels"] == {"only": "this"}


def test_smp_patch_delete_directive_on_a_map_removes_the_field() -> None:
    original = deployment([{"name": "a", "image": "x"}])
    out = strategic_merge_patch(original, {"spec": {"strategy": {"$patch": "delete"}}}, "apps", "Deployment")
    assert "strategy" not in out["spec"]
    assert out["spec"]["replicas"] == 2


def test_smp_null_removes_field_and_maps_merge() -> None:
    original = deployment([{"name": "a", "image": "x"}])
    patch = {"metadata": {"labels": {"app": None, "tier": "web"}}, "spec": {"replicas": None}}
    out = strategic_merge_patch(original, patch, "apps", "Deployment")
    assert out["metadata"]["labels"] == {"tier": "web"}
    assert "replicas" not in out["spec"]


def test_smp_finalizers_set_merge_and_delete_from_primitive_list() -> None:
    svc = {"metadata": {"name": "s", "finalizers": ["a.example/x", "b.example/y"]}, "spec": {}}
    out = strategic_merge_patch(
        svc, {"metadata": {"finalizers": ["c.example/z", "a.example/x"]}}, "", "Service"
    )
    # The patch's items in its order, the server-only one after (strategicpatch mergeSortedSlice).
    assert out["metadata"]["finalizers"] == ["c.example/z", "a.example/x", "b.example/y"]
    out2 = strategic_merge_patch(
        out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b.example/y"]}}, "", "Service"
    )
    assert out2["metadata"]["finalizers"] == ["c.example/z", "a.example/x"]


def test_smp_set_element_order_reorders_and_keeps_server_only_items() -> None:
    original = deployment(
        [{"name": "a", "image": "1"}, {"name": "server-only", "image": "s"}, {"name": "b", "image": "2"}]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "b", "image": "3"}],
                }
            }
        }
    }
    merged = containers_of(strategic_merge_patch(original, patch, "apps", "Deployment"))
    # As strategicpatch's mergeSortedSlice: b sorts before a; the server-only container (server index 1) is
    # compared with b (server index 2) and goes first.
    assert [(c["name"], c["image"]) for c in merged] == [("server-only", "s"), ("b", "3"), ("a", "1")]
    # With no server-only element the order list alone decides.
    plain = deployment([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    reordered = strategic_merge_patch(
        plain,
        {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}},
        "apps",
        "Deployment",
    )
    assert [c["name"] for c in containers_of(reordered)] == ["b", "a"]


def test_smp_service_ports_merge_by_port_keeping_node_port() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx-app"},
        "spec": {
            "type": "NodePort",
            "ports": [{"port": 8060, "protocol": "TCP", "targetPort": 80, "nodePort": 30001}],
            "selector": {"app": "nginx-app"},
        },
    }
    # What kubectl apply sends when a second port is added to the manifest.
    patch = {
        "spec": {
            "$setElementOrder/ports": [{"port": 8060}, {"port": 8061}],
            "ports": [{"port": 8061, "protocol": "TCP", "targetPort": 81}],
        }
    }
    out = strategic_merge_patch(svc, patch, "", "Service")
    assert out["spec"]["ports"] == [
        {"port": 8060, "protocol": "TCP", "targetPort": 80, "nodePort": 30001},
        {"port": 8061, "protocol": "TCP", "targetPort": 81},
    ]
    # Removing a port from the manifest: kubectl sends a $patch: delete element.
    out2 = strategic_merge_patch(
        out, {"spec": {"ports": [{"port": 8060, "$patch": "delete"}]}}, "", "Service"
    )
    assert [p["port"] for p in out2["spec"]["ports"]] == [8061]


def test_smp_status_conditions_merge_by_type() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]
        },
    }
    out = strategic_merge_patch(
        pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "", "Pod"
    )
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]


def test_smp_owner_references_merge_by_uid_and_lists_without_metadata_are_replaced() -> None:
    cm = {
        "metadata": {
            "name": "c",
            "ownerReferences": [{"uid": "1", "kind": "A", "name": "a", "apiVersion": "v1"}],
        },
        "data": {"k": "v"},
    }
    patch = {"metadata": {"ownerReferences": [{"uid": "2", "kind": "B", "name": "b", "apiVersion": "v1"}]}}
    out = strategic_merge_patch(cm, patch, "", "ConfigMap")
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["2", "1"]
    svc = {"spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}}
    assert strategic_merge_patch(svc, {"spec": {"externalIPs": ["3.3.3.3"]}}, "", "Service")["spec"][
        "externalIPs"
    ] == ["3.3.3.3"]


def test_smp_volumes_merge_with_retain_keys() -> None:
    original = deployment(
        [{"name": "a", "image": "x"}],
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/d"}}
                    ]
                }
            }
        }
    }
    out = strategic_merge_patch(original, patch, "apps", "Deployment")
    assert out["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/d"}},
        {"name": "cfg", "configMap": {"name": "c"}},
    ]


def test_smp_new_list_without_original_drops_directives() -> None:
    original = deployment([{"name": "a", "image": "x"}])
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}
                    ]
                }
            }
        }
    }
    (c,) = containers_of(strategic_merge_patch(original, patch, "apps", "Deployment"))
    assert c["env"] == [{"name": "X", "value": "1"}]


def test_smp_missing_merge_key_is_an_error_and_inputs_untouched() -> None:
    original = deployment([{"name": "a", "image": "x"}])
    before = copy.deepcopy(original)
    with pytest.raises(ApiError) as info:
        strategic_merge_patch(
            original, {"spec": {"template": {"spec": {"containers": [{"image": "y"}]}}}}, "apps", "Deployment"
        )
    assert info.value.code == 400
    assert "merge key" in info.value.message
    assert original == before


def test_smp_unknown_directive_rejected() -> None:
    with pytest.raises(ApiError):
        strategic_merge_patch({"metadata": {}}, {"metadata": {"$patch": "explode"}}, "", "ConfigMap")


def test_supports_strategic_merge_only_for_builtin_kinds() -> None:
    for group, kind in [
        ("", "Service"),
        ("apps", "Deployment"),
        ("", "Pod"),
        ("discovery.k8s.io", "EndpointSlice"),
    ]:
        assert supports_strategic_merge(group, kind), kind
    assert not supports_strategic_merge("metallb.io", "IPAddressPool")
    assert not supports_strategic_merge("apps", "Service")


# --------------------------------------------------------------------------------------------- properties

json_leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab", max_size=2)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text("abc", max_size=2), children, max_size=3)
    ),
    max_leaves=8,
)
json_object = st.dictionaries(st.text("abc", max_size=2), json_value, max_size=4)


@given(json_object, json_object)
@settings(max_examples=200, deadline=None)
def test_merge_patch_is_idempotent(target: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@given(json_object, json_object)
@settings(max_examples=200, deadline=None)
def test_strategic_merge_without_lists_or_directives_equals_merge_patch(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    # For maps and scalars the two patch types agree (lists differ by design): use a kind-less, schema-less
    # part of a ConfigMap (data-like maps) by nesting everything under "data".
    def no_lists(value: Any) -> bool:
        if isinstance(value, list):
            return False
        if isinstance(value, dict):
            return all(no_lists(v) for v in value.values())
        return True

    if not (no_lists(target) and no_lists(patch)):
        return
    expected = merge_patch({"data": target}, {"data": patch})
    assert strategic_merge_patch({"data": target}, {"data": patch}, "", "ConfigMap") == expected


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6),
    st.lists(st.sampled_from(["a", "b", "e"]), max_size=4),
)
@settings(max_examples=100, deadline=None)
def test_finalizer_set_merge_keeps_every_value_once(original: list[str], added: list[str]) -> None:
    original = list(dict.fromkeys(original))
    out = strategic_merge_patch(
        {"metadata": {"finalizers": original}}, {"metadata": {"finalizers": added}}, "", "Pod"
    )
    merged = out["metadata"]["finalizers"]
    # Every value once; the patch's values keep the patch's order, the server-only ones their old order.
    assert set(merged) == set(original) | set(added)
    assert len(merged) == len(set(merged))
    patched = list(dict.fromkeys(added))
    assert [v for v in merged if v in patched] == patched
    assert [v for v in merged if v not in patched] == [v for v in original if v not in patched]
