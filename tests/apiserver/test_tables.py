"""Unit tests of lab.apiserver.tables: columns and cells as kube-apiserver's printers produce them."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from lab.apiserver.tables import eval_json_path, format_selector, human_duration, to_table

NOW = datetime.datetime(2026, 1, 10, 12, 0, 0, tzinfo=datetime.UTC)


def ago(seconds: int) -> str:
    return (NOW - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, age: int = 2, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(age), **extra}


def header(table: dict[str, Any], wide: bool = False) -> list[str]:
    return [c["name"].upper() for c in table["columnDefinitions"] if wide or c["priority"] == 0]


def cells(table: dict[str, Any], wide: bool = False) -> list[list[Any]]:
    keep = [wide or c["priority"] == 0 for c in table["columnDefinitions"]]
    return [[cell for cell, k in zip(row["cells"], keep, strict=True) if k] for row in table["rows"]]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (2, "2s"),
        (119, "119s"),
        (120, "2m"),
        (310, "5m10s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (4 * 86400 + 15 * 3600, "4d15h"),
        (7 * 86400 + 23 * 3600, "7d23h"),
        (8 * 86400, "8d"),
        (16 * 86400 + 5 * 3600, "16d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400 + 5 * 86400, "8y"),
    ],
)
def test_human_duration_matches_kubernetes(seconds: int, expected: str) -> None:
    assert human_duration(seconds) == expected


def services() -> list[dict[str, Any]]:
    return [
        {
            "metadata": meta("kubernetes", 4 * 86400 + 15 * 3600),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.1",
                "clusterIPs": ["10.96.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            },
        },
        {
            "metadata": meta("headless-service"),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "None",
                "clusterIPs": ["None"],
                "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": "nginx"},
            },
        },
        {
            "metadata": meta("local-lb"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.111.191.196"],
                "ports": [
                    {"name": "a", "port": 80, "nodePort": 32724, "protocol": "TCP"},
                    {"name": "b", "port": 53, "nodePort": 30090, "protocol": "UDP"},
                ],
            },
            "status": {"loadBalancer": {}},
        },
        {
            "metadata": meta("my-externalname"),
            "spec": {"type": "ExternalName", "externalName": "www.example.com"},
        },
        {
            "metadata": meta("nginx-app"),
            "spec": {
                "type": "NodePort",
                "clusterIPs": ["10.102.162.4"],
                "ports": [{"port": 8060, "nodePort": 30001, "protocol": "TCP"}],
                "selector": {"app": "nginx-app", "tier": "web"},
            },
        },
        {
            "metadata": meta("nginx-metallb"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.104.138.226"],
                "ports": [{"port": 8090, "nodePort": 32017, "protocol": "TCP"}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.90", "ipMode": "VIP"}]}},
        },
    ]


def test_service_table_matches_the_reference_output() -> None:
    table = to_table("", "services", services(), NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert header(table) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert header(table, wide=True)[-1] == "SELECTOR"
    assert cells(table) == [
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "4d15h"],
        ["headless-service", "ClusterIP", "None", "<none>", "80/TCP", "2s"],
        ["local-lb", "LoadBalancer", "10.111.191.196", "<pending>", "80:32724/TCP,53:30090/UDP", "2s"],
        ["my-externalname", "ExternalName", "<none>", "www.example.com", "<none>", "2s"],
        ["nginx-app", "NodePort", "10.102.162.4", "<none>", "8060:30001/TCP", "2s"],
        ["nginx-metallb", "LoadBalancer", "10.104.138.226", "192.168.10.90", "8090:32017/TCP", "2s"],
    ]
    wide = cells(table, wide=True)
    assert [row[-1] for row in wide] == [
        "<none>",
        "app=nginx",
        "<none>",
        "<none>",
        "app=nginx-app,tier=web",
        "<none>",
    ]
    name_col = table["columnDefinitions"][0]
    assert name_col["format"] == "name" and name_col["type"] == "string" and name_col["description"]


def test_service_external_ip_variants() -> None:
    lb = {
        "metadata": meta("lb"),
        "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "externalIPs": ["198.51.100.1"]},
        "status": {
            "loadBalancer": {
                "ingress": [{"ip": "192.0.2.20"}, {"hostname": "lb.example.com"}, {"ip": "192.0.2.10"}]
            }
        },
    }
    np = {
        "metadata": meta("np"),
        "spec": {"type": "NodePort", "externalIPs": ["198.51.100.2", "198.51.100.3"]},
    }
    rows = cells(to_table("", "services", [lb, np], NOW))
    # Ingress addresses are a sorted set, then spec.externalIPs.
    assert rows[0][3] == "192.0.2.10,192.0.2.20,lb.example.com,198.51.100.1"
    assert rows[1][3] == "198.51.100.2,198.51.100.3"


def test_include_object_modes() -> None:
    svc = services()[4]
    metadata = to_table("", "services", [svc], NOW)["rows"][0]["object"]
    assert metadata == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": svc["metadata"],
    }
    assert to_table("", "services", [svc], NOW, include_object="Object")["rows"][0]["object"] == svc
    assert "object" not in to_table("", "services", [svc], NOW, include_object="None")["rows"][0]


def test_pod_table_columns_and_statuses() -> None:
    running = {
        "metadata": meta("nginx-server1-77d4c485d8-gsrmq", 12),
        "spec": {"nodeName": "worker1", "containers": [{"name": "c1"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.224.235.147",
            "podIPs": [{"ip": "10.224.235.147"}],
            "containerStatuses": [
                {"name": "c1", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(10)}}}
            ],
        },
    }
    pending = {
        "metadata": meta("p2", 3),
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Pending"},
    }
    crashing = {
        "metadata": meta("p3", 600),
        "spec": {"containers": [{"name": "a"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(65)}},
                }
            ],
        },
    }
    deleting = {
        "metadata": meta("p4", 30, deletionTimestamp=ago(1)),
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running"},
    }
    done = {
        "metadata": meta("p5", 30),
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Succeeded"},
    }
    table = to_table("", "pods", [running, pending, crashing, deleting, done], NOW)
    assert header(table) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert header(table, wide=True)[5:] == ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert cells(table, wide=True) == [
        [
            "nginx-server1-77d4c485d8-gsrmq",
            "1/1",
            "Running",
            "0",
            "12s",
            "10.224.235.147",
            "worker1",
            "<none>",
            "<none>",
        ],
        ["p2", "0/2", "Pending", "0", "3s", "<none>", "<none>", "<none>", "<none>"],
        ["p3", "0/1", "CrashLoopBackOff", "4 (65s ago)", "10m", "<none>", "<none>", "<none>", "<none>"],
        ["p4", "0/1", "Terminating", "0", "30s", "<none>", "<none>", "<none>", "<none>"],
        ["p5", "0/1", "Succeeded", "0", "30s", "<none>", "<none>", "<none>", "<none>"],
    ]
    assert table["rows"][4]["conditions"][0]["reason"] == "Succeeded"


def test_node_table() -> None:
    node = {
        "metadata": meta(
            "worker1", 86400 * 16, labels={"node-role.kubernetes.io/control-plane": "", "x": "y"}
        ),
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "worker1"},
                {"type": "InternalIP", "address": "192.168.10.12"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.37.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0",
            },
        },
    }
    bare = {"metadata": meta("n2", 5), "status": {}}
    table = to_table("", "nodes", [node, bare], NOW)
    assert header(table) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert cells(table, wide=True) == [
        [
            "worker1",
            "Ready,SchedulingDisabled",
            "control-plane",
            "16d",
            "v1.37.0",
            "192.168.10.12",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "<unknown>",
        ],
        ["n2", "Unknown", "<none>", "5s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"],
    ]


def test_endpoints_table_truncates_after_three() -> None:
    ep = {
        "metadata": meta("nginx-svc", 8),
        "subsets": [
            {
                "addresses": [{"ip": f"172.16.0.{i}"} for i in range(1, 6)],
                "ports": [{"port": 80, "protocol": "TCP"}],
            }
        ],
    }
    two = {
        "metadata": meta("nginx-app", 130),
        "subsets": [{"addresses": [{"ip": "172.16.1.24"}, {"ip": "172.16.2.20"}], "ports": [{"port": 80}]}],
    }
    empty = {"metadata": meta("none", 1)}
    six = {
        "metadata": meta("v6", 1),
        "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}],
    }
    table = to_table("", "endpoints", [ep, two, empty, six], NOW)
    assert header(table) == ["NAME", "ENDPOINTS", "AGE"]
    assert cells(table) == [
        ["nginx-svc", "172.16.0.1:80,172.16.0.2:80,172.16.0.3:80 + 2 more...", "8s"],
        ["nginx-app", "172.16.1.24:80,172.16.2.20:80", "2m10s"],
        ["none", "<none>", "1s"],
        ["v6", "[fd00::1]:80", "1s"],
    ]


def test_endpointslice_table() -> None:
    es = {
        "metadata": meta("nginx-svc-abcde", 5),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "named"}],
        "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 5)],
    }
    empty = {"metadata": meta("e", 5), "addressType": "IPv6", "endpoints": []}
    table = to_table("discovery.k8s.io", "endpointslices", [es, empty], NOW)
    assert header(table) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert cells(table) == [
        ["nginx-svc-abcde", "IPv4", "80,named", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...", "5s"],
        ["e", "IPv6", "<unset>", "<unset>", "5s"],
    ]


def test_configmap_secret_namespace_serviceaccount_lease_tables() -> None:
    cm = {"metadata": meta("config", 60), "data": {"config": "x", "b": "y"}, "binaryData": {"c": "AA=="}}
    assert header(to_table("", "configmaps", [cm], NOW)) == ["NAME", "DATA", "AGE"]
    assert cells(to_table("", "configmaps", [cm], NOW)) == [["config", 3, "60s"]]
    secret = {"metadata": meta("s", 1), "type": "Opaque", "data": {"k": "dg=="}}
    assert header(to_table("", "secrets", [secret], NOW)) == ["NAME", "TYPE", "DATA", "AGE"]
    assert cells(to_table("", "secrets", [secret], NOW)) == [["s", "Opaque", 1, "1s"]]
    ns = {"metadata": meta("metallb-system", 130 * 60), "status": {"phase": "Active"}}
    assert header(to_table("", "namespaces", [ns], NOW)) == ["NAME", "STATUS", "AGE"]
    assert cells(to_table("", "namespaces", [ns], NOW)) == [["metallb-system", "Active", "130m"]]
    sa = {"metadata": meta("default", 1)}
    assert cells(to_table("", "serviceaccounts", [sa], NOW)) == [["default", 0, "1s"]]
    lease = {"metadata": meta("ironlb-controller", 1), "spec": {"holderIdentity": "node-a"}}
    table = to_table("coordination.k8s.io", "leases", [lease], NOW)
    assert header(table) == ["NAME", "HOLDER", "AGE"]
    assert cells(table) == [["ironlb-controller", "node-a", "1s"]]


def test_deployment_and_daemonset_tables() -> None:
    dep = {
        "metadata": meta("nginx-app", 26),
        "spec": {
            "replicas": 2,
            "selector": {
                "matchLabels": {"app": "nginx-app"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}],
            },
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c1", "image": "nginx:1.15-alpine"},
                        {"name": "s", "image": "busybox"},
                    ]
                }
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
    }
    new = {"metadata": meta("new", 1), "spec": {"replicas": 3, "template": {"spec": {"containers": []}}}}
    table = to_table("apps", "deployments", [dep, new], NOW)
    assert header(table) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert cells(table, wide=True) == [
        [
            "nginx-app",
            "2/2",
            2,
            2,
            "26s",
            "c1,s",
            "nginx:1.15-alpine,busybox",
            "app=nginx-app,env in (dev,prod)",
        ],
        ["new", "0/3", 0, 0, "1s", "", "", "<none>"],
    ]
    ds = {
        "metadata": meta("speaker", 110 * 60),
        "spec": {
            "selector": {"matchLabels": {"app": "speaker"}},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "speaker", "image": "ironlb"}],
                }
            },
        },
        "status": {
            "desiredNumberScheduled": 4,
            "currentNumberScheduled": 4,
            "numberReady": 3,
            "updatedNumberScheduled": 4,
            "numberAvailable": 3,
        },
    }
    table = to_table("apps", "daemonsets", [ds], NOW)
    assert header(table) == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ]
    assert cells(table) == [["speaker", 4, 4, 3, 4, 3, "kubernetes.io/os=linux", "110m"]]


def test_event_tables_core_and_events_api() -> None:
    core = {
        "metadata": meta("nginx.17a", 100),
        "involvedObject": {"kind": "Service", "name": "nginx-metallb", "namespace": "default"},
        "reason": "IPAllocated",
        "message": "Assigned IP 192.168.10.90",
        "type": "Normal",
        "count": 3,
        "firstTimestamp": ago(100),
        "lastTimestamp": ago(20),
        "source": {"component": "ironlb-controller"},
    }
    modern = {
        "metadata": meta("x.1", 50),
        "regarding": {"kind": "Pod", "name": "p"},
        "note": "pulled",
        "reason": "Pulled",
        "type": "Normal",
        "eventTime": "2026-01-10T11:59:10.000000Z",
        "reportingController": "kubelet",
        "reportingInstance": "node1",
    }
    for group in ("", "events.k8s.io"):
        table = to_table(group, "events", [core, modern], NOW)
        assert header(table) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert cells(table) == [
            ["20s", "Normal", "IPAllocated", "service/nginx-metallb", "Assigned IP 192.168.10.90"],
            ["50s", "Normal", "Pulled", "pod/p", "pulled"],
        ]
        wide = cells(table, wide=True)
        assert wide[0][4:6] == ["", "ironlb-controller"]
        assert wide[1][5] == "kubelet, node1"
        assert wide[0][-3:] == ["100s", 3, "nginx.17a"]


def test_crd_rbac_and_fallback_tables() -> None:
    crd = {"metadata": {"name": "ipaddresspools.metallb.io", "creationTimestamp": "2026-01-01T10:00:00Z"}}
    table = to_table("apiextensions.k8s.io", "customresourcedefinitions", [crd], NOW)
    assert header(table) == ["NAME", "CREATED AT"]
    assert cells(table) == [["ipaddresspools.metallb.io", "2026-01-01T10:00:00Z"]]
    binding = {
        "metadata": meta("b", 5),
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "ctl", "namespace": "metallb-system"},
            {"kind": "User", "name": "u"},
        ],
    }
    table = to_table("rbac.authorization.k8s.io", "rolebindings", [binding], NOW)
    assert cells(table, wide=True) == [["b", "ClusterRole/view", "5s", "u", "", "metallb-system/ctl"]]
    other = to_table("", "replicationcontrollers", [{"metadata": meta("r", 7)}], NOW)
    assert header(other) == ["NAME", "AGE"] and cells(other) == [["r", "7s"]]


def test_custom_resources_use_printer_columns() -> None:
    pool = {
        "metadata": meta("default", 300),
        "spec": {"addresses": ["192.168.10.90-192.168.10.100"], "autoAssign": True, "avoidBuggyIPs": False},
        "status": {"assignedIPv4": 3, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    columns: list[dict[str, Any]] = [
        {"name": "Auto Assign", "type": "boolean", "jsonPath": ".spec.autoAssign"},
        {"name": "Avoid Buggy IPs", "type": "boolean", "jsonPath": ".spec.avoidBuggyIPs"},
        {"name": "Addresses", "type": "string", "jsonPath": ".spec.addresses"},
        {"name": "First", "type": "string", "jsonPath": ".spec.addresses[0]", "priority": 1},
        {"name": "Assigned", "type": "integer", "jsonPath": ".status.assignedIPv4"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    table = to_table("metallb.io", "ipaddresspools", [pool], NOW, printer_columns=columns)
    assert header(table) == [
        "NAME",
        "AUTO ASSIGN",
        "AVOID BUGGY IPS",
        "ADDRESSES",
        "ASSIGNED",
        "READY",
        "MISSING",
        "AGE",
    ]
    assert cells(table) == [
        ["default", True, False, '["192.168.10.90-192.168.10.100"]', 3, "True", None, "5m"]
    ]
    assert table["columnDefinitions"][4]["priority"] == 1
    assert cells(table, wide=True)[0][4] == "192.168.10.90-192.168.10.100"
    # A CRD without additionalPrinterColumns: Name and the default Age column (type date).
    table = to_table("metallb.io", "l2advertisements", [{"metadata": meta("l2", 61)}], NOW)
    assert header(table) == ["NAME", "AGE"] and cells(table) == [["l2", "61s"]]
    assert table["columnDefinitions"][1]["type"] == "date"


def test_json_path_and_selector_helpers() -> None:
    obj = {"a": {"b": [{"c": 1, "t": "x"}, {"c": 2, "t": "y"}]}}
    assert eval_json_path(obj, ".a.b[1].c") == [2]
    assert eval_json_path(obj, "{.a.b[*].c}") == [1, 2]
    assert eval_json_path(obj, ".a.b[?(@.t=='y')].c") == [2]
    assert eval_json_path(obj, ".a.zz") == []
    assert eval_json_path(obj, "garbage") == []
    assert (
        format_selector(
            {
                "matchExpressions": [
                    {"key": "k", "operator": "Exists"},
                    {"key": "a", "operator": "DoesNotExist"},
                ]
            }
        )
        == "!a,k"
    )
    assert format_selector({"matchExpressions": [{"key": "k", "operator": "Bogus"}]}) == "<invalid>"
    assert format_selector({}) == ""
