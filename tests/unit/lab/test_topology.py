"""The pure topology core: parsing containerlab files, validation errors, and the lab plan."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.runner import kubelet_argv, node_kubeconfig_text
from lab.topology import (
    IFNAMSIZ,
    TopologyError,
    load_topology,
    parse_topology,
    parse_topology_text,
    plan_lab,
    render_containerlab_exec,
    render_host_batch,
    render_node_batch,
    render_switch_batch,
)

TOPOLOGIES = Path(__file__).resolve().parents[3] / "lab" / "topologies"


def default_doc() -> dict[str, Any]:
    loaded = yaml.safe_load((TOPOLOGIES / "default.clab.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def error_of(doc: object) -> str:
    with pytest.raises(TopologyError) as info:
        parse_topology(doc, source="t.clab.yml")
    return str(info.value)


def test_default_topology_plan():
    plan = plan_lab(load_topology(TOPOLOGIES / "default.clab.yml"))
    assert plan.name == "ironlb" and plan.prefix == "ilb"
    assert [n.name for n in plan.k8s_nodes] == ["node1", "node2", "node3"]
    assert [n.k8s_node_name for n in plan.k8s_nodes] == ["node1", "node2", "node3"]
    client = plan.node("client")
    assert client.role == "client" and client.pod_cidr is None and client.routes == ()
    assert str(client.ipv4) == "192.168.10.200/24" and str(client.ipv6) == "fd00:10::200/64"
    node1 = plan.node("node1")
    assert node1.netns == "ilb-node1"
    assert str(node1.ipv4) == "192.168.10.11/24" and str(node1.ipv6) == "fd00:10::11/64"
    assert str(node1.pod_gateway4) == "10.244.1.1/24" and str(node1.pod_gateway6) == "fd00:244:1::1/64"
    assert {(str(r.dest), str(r.via)) for r in node1.routes} == {
        ("10.244.2.0/24", "192.168.10.12"),
        ("fd00:244:2::/64", "fd00:10::12"),
        ("10.244.3.0/24", "192.168.10.13"),
        ("fd00:244:3::/64", "fd00:10::13"),
    }
    # The tutorial's MetalLB pool 192.168.10.90-100 is on the segment and free.
    pool = {ipaddress.ip_address(f"192.168.10.{i}") for i in range(90, 101)}
    assert all(ipaddress.ip_address("192.168.10.90") in n.ipv4.network for n in plan.nodes if n.ipv4)
    assert not pool & {n.ipv4.ip for n in plan.nodes if n.ipv4}
    # mgmt: gateway first, nodes in file order, like a containerlab docker network.
    assert str(plan.mgmt_gateway4) == "172.20.30.1/24"
    mgmt = [str(n.mgmt_ipv4.ip) for n in plan.nodes]
    assert mgmt == ["172.20.30.2", "172.20.30.3", "172.20.30.4", "172.20.30.5"]
    assert plan.netns_names == ("ilb-sw", "ilb-node1", "ilb-node2", "ilb-node3", "ilb-client")
    assert node1.host_veth == "ilb-node1" and plan.mgmt_bridge == "ilb-mgmt"


def test_two_shipped_labs_do_not_collide():
    a = plan_lab(load_topology(TOPOLOGIES / "default.clab.yml"))
    b = plan_lab(load_topology(TOPOLOGIES / "mini.clab.yml"))
    assert a.name != b.name and a.prefix != b.prefix
    assert not a.mgmt_gateway4.network.overlaps(b.mgmt_gateway4.network)
    assert a.mgmt_gateway6 and b.mgmt_gateway6
    assert not a.mgmt_gateway6.network.overlaps(b.mgmt_gateway6.network)
    assert not set(a.netns_names) & set(b.netns_names)
    assert len(b.k8s_nodes) == 2


@pytest.mark.parametrize("name", ["default", "mini"])
def test_shipped_exec_lines_match_the_plan(name):
    """The containerlab `exec:` lines in the files configure each node exactly like the netns runner does."""
    topology = load_topology(TOPOLOGIES / f"{name}.clab.yml")
    plan = plan_lab(topology)
    for node in plan.nodes:
        assert list(topology.node(node.name).exec) == render_containerlab_exec(node), node.name


@pytest.mark.parametrize("name", ["default", "mini"])
def test_every_interface_name_fits_linux(name):
    plan = plan_lab(load_topology(TOPOLOGIES / f"{name}.clab.yml"))
    names = [plan.mgmt_bridge, *plan.bridges]
    for veth in plan.veths:
        names += [veth.name_a, veth.name_b]
    assert all(0 < len(n) <= IFNAMSIZ for n in names), names
    # Everything created in the host netns carries the prefix.
    host = [v.name_b for v in plan.veths if v.netns_b is None] + [plan.mgmt_bridge]
    assert all(n.startswith(f"{plan.prefix}-") for n in host)
    assert all(ns.startswith(f"{plan.prefix}-") for ns in plan.netns_names)


def test_render_batches():
    plan = plan_lab(load_topology(TOPOLOGIES / "default.clab.yml"))
    host = render_host_batch(plan)
    assert host[:5] == [f"netns add {ns}" for ns in plan.netns_names]
    assert "link add eth1 netns ilb-node1 type veth peer name ilb-node1-e1 netns ilb-sw" in host
    assert "link add eth0 netns ilb-node1 type veth peer name ilb-node1" in host
    assert "link set ilb-node1 master ilb-mgmt" in host
    assert "addr add 172.20.30.1/24 dev ilb-mgmt" in host
    assert not any("default" in line for line in host)
    switch = render_switch_batch(plan)
    assert "link add ilb-seg type bridge mcast_snooping 0" in switch
    assert "link set ilb-client-e1 master ilb-seg" in switch
    node = render_node_batch(plan, plan.node("node2"))
    assert "addr add 172.20.30.3/24 dev eth0" in node
    assert "route add 10.244.1.0/24 via 192.168.10.11" in node
    assert "addr add fd00:244:2::1/64 dev cbr0 nodad" in node
    # No default route anywhere: lab traffic never leaves the machine.
    for lab_node in plan.nodes:
        assert not any(" default" in line for line in render_node_batch(plan, lab_node))


def test_kubelet_argv_follows_the_contract(tmp_path):
    plan = plan_lab(load_topology(TOPOLOGIES / "default.clab.yml"))
    argv = kubelet_argv(plan, plan.node("node3"), tmp_path / "kubeconfig", tmp_path / "kl")
    assert argv[1:3] == ["-m", "lab.kubelet"]
    args = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert args["--node-name"] == "node3" and args["--netns"] == "ilb-node3"
    assert args["--pod-bridge"] == "cbr0" and args["--pod-cidr"] == "10.244.3.0/24"
    assert args["--pod-cidr6"] == "fd00:244:3::/64" and args["--internal-ip"] == "192.168.10.13"
    assert args["--internal-ip6"] == "fd00:10::13" and args["--prefix"] == "ilb"
    assert args["--kubeconfig"] == str(tmp_path / "kubeconfig")
    assert args["--state-dir"] == str(tmp_path / "kl")


def test_node_kubeconfig_points_at_the_gateway():
    admin = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": "https://127.0.0.1:4431", "certificate-authority-data": "X"},
                }
            ],
            "users": [{"name": "u", "user": {"token": "t"}}],
        }
    )
    out = yaml.safe_load(node_kubeconfig_text(admin, "https://172.20.30.1:4431"))
    cluster = out["clusters"][0]["cluster"]
    assert cluster == {"server": "https://172.20.30.1:4431", "certificate-authority-data": "X"}
    assert out["users"] == [{"name": "u", "user": {"token": "t"}}]


def test_mgmt_addresses_from_the_file_and_defaults():
    doc = default_doc()
    del doc["mgmt"]
    plan = plan_lab(parse_topology(doc))
    assert str(plan.mgmt_gateway4) == "172.20.20.1/24"  # containerlab's default mgmt subnet
    doc = default_doc()
    doc["topology"]["nodes"]["node2"]["mgmt-ipv4"] = "172.20.30.2"
    plan = plan_lab(parse_topology(doc))
    assert str(plan.node("node2").mgmt_ipv4.ip) == "172.20.30.2"
    assert str(plan.node("node1").mgmt_ipv4.ip) == "172.20.30.3"  # the next free one


def test_prefix_defaults_to_a_short_name_and_long_host_names_fall_back():
    doc = default_doc()
    del doc["prefix"]
    doc["name"] = "lab7"
    nodes = doc["topology"]["nodes"]
    nodes["averyveryverylongnode"] = nodes.pop("client")
    for link in doc["topology"]["links"]:
        link["endpoints"] = [e.replace("client:", "averyveryverylongnode:") for e in link["endpoints"]]
    plan = plan_lab(parse_topology(doc))
    assert plan.prefix == "lab7"
    assert plan.node("averyveryverylongnode").host_veth == "lab7-m3"
    assert plan.node("averyveryverylongnode").netns == "lab7-averyveryverylongnode"


def test_node_labels_and_k8s_name():
    doc = default_doc()
    labels = doc["topology"]["nodes"]["node1"]["labels"]
    labels["ironlb.io/k8s-node-name"] = "worker-a"
    labels["ironlb.io/node-labels"] = "topology.kubernetes.io/zone=z1, example.com/x=y"
    plan = plan_lab(parse_topology(doc))
    node = plan.node("worker-a")
    assert node.name == "node1"
    assert node.node_labels == (("topology.kubernetes.io/zone", "z1"), ("example.com/x", "y"))


def _mutate(path: list[Any], value: Any, delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(default_doc())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


L1 = ["topology", "nodes", "node1", "labels"]
N = ["topology", "nodes"]
EP = ["topology", "links", 0, "endpoints"]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([1, 2], "(top level): expected a mapping"),
        (_mutate(["name"], None, delete=True), "name: missing"),
        (_mutate(["name"], 7), "name: expected a string"),
        (_mutate(["prefix"], "Bad-Prefix"), "prefix: lab prefix 'Bad-Prefix' must be 1-8"),
        (_mutate(["prefix"], "waytoolongprefix"), "must be 1-8 lowercase"),
        (_mutate(["mgmt", "ipv4-subnet"], "172.20.30.0/30"), "has too few addresses"),
        (_mutate(["mgmt", "ipv4-subnet"], "172.20.300.0/24"), "mgmt.ipv4-subnet: '172.20.300.0/24' is not"),
        (_mutate(["mgmt", "ipv6-subnet"], "172.20.30.0/24"), "mgmt.ipv6-subnet"),
        (_mutate(["topology", "nodes"], {}), "topology.nodes: no nodes"),
        (_mutate([*N, "node1", "kind"], "srl"), "kind 'srl' is not supported"),
        (_mutate([*N, "Node_X"], {"kind": "linux"}), "topology.nodes.Node_X: node name"),
        (_mutate([*N, "sw"], {"kind": "linux"}), "reserved"),
        (_mutate([*L1, "ironlb.io/ipv4"], "192.168.10.300/24"), "ironlb.io/ipv4: '192.168.10.300/24' is not"),
        (_mutate([*L1, "ironlb.io/ipv4"], "192.168.10.11"), "needs a prefix length"),
        (_mutate([*L1, "ironlb.io/ipv4"], "192.168.10.12/24"), "192.168.10.12 is also used by node node1"),
        (_mutate([*L1, "ironlb.io/ipv4"], "192.168.11.11/24"), "is not in node1's subnet"),
        (_mutate([*L1, "ironlb.io/pod-cidr"], None, delete=True), "a k8s-node needs a pod CIDR"),
        (_mutate([*L1, "ironlb.io/pod-cidr"], "10.244.2.0/24"), "overlaps 10.244.2.0/24"),
        (_mutate([*L1, "ironlb.io/pod-cidr"], "192.168.10.0/25"), "overlaps 192.168.10.0/24"),
        (_mutate([*L1, "ironlb.io/pod-cidr"], "10.244.1.0/31"), "too small for pods"),
        (_mutate([*L1, "ironlb.io/ipv6"], None, delete=True), "an IPv6 pod CIDR needs ironlb.io/ipv6"),
        (_mutate([*L1, "ironlb.io/role"], "router"), "must be one of k8s-node, client"),
        (_mutate([*L1, "ironlb.io/pod-cdir"], "10.9.0.0/24"), "unknown ironlb label"),
        (_mutate([*L1, "ironlb.io/iface"], "eth7"), "node has no link on interface 'eth7'"),
        (_mutate([*L1, "ironlb.io/k8s-node-name"], "Node_1"), "is not a Node name"),
        (_mutate([*L1, "ironlb.io/k8s-node-name"], "node2"), "'node2' is also the Node name of node1"),
        (_mutate([*L1, "ironlb.io/node-labels"], "novalue"), "must be key=value"),
        (_mutate([*L1, "extra"], 5), "labels.extra: expected a string"),
        (_mutate([*N, "client", "labels", "ironlb.io/pod-cidr"], "10.9.0.0/24"), "only a k8s-node"),
        (_mutate([*N, "node1", "mgmt-ipv4"], "10.0.0.5"), "not a host address of the mgmt"),
        (_mutate([*N, "node1", "mgmt-ipv4"], "172.20.30.1"), "already used by the gateway"),
        (_mutate(EP, ["node1:eth1"]), "expected a list of two"),
        (_mutate(EP, ["node1-eth1", "ilb-seg:x"]), "must be 'node:interface'"),
        (_mutate(EP, ["nodeX:eth1", "ilb-seg:x"]), "node 'nodeX' is not defined"),
        (_mutate(EP, ["node1:eth0", "ilb-seg:x"]), "eth0 is the management"),
        (_mutate(EP, ["node1:eth1", "ilb-seg:averylongifname1"]), "at most 15"),
        (_mutate(EP, ["node1:eth1", "ilb-seg:ilb-node2-e1"]), "already used"),
        (_mutate(EP, ["node1:eth1", "node1:eth2"]), "both ends are on node"),
    ],
)
def test_bad_topologies_name_the_field(doc, expected):
    message = error_of(doc)
    assert expected in message
    assert message.startswith("t.clab.yml")


def test_nodes_on_different_segments_cannot_route_pods():
    doc = default_doc()
    doc["topology"]["nodes"]["seg2"] = {"kind": "bridge"}
    doc["topology"]["links"][2]["endpoints"] = ["node3:eth1", "seg2:n3"]
    assert "must share one segment bridge" in error_of(doc)


def test_not_yaml_and_unreadable_file(tmp_path):
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse_topology_text("name: [unclosed", source="x.yml")
    with pytest.raises(TopologyError, match="cannot read topology file"):
        load_topology(tmp_path / "missing.clab.yml")


def test_defaults_and_kinds_are_merged():
    doc = default_doc()
    for node in doc["topology"]["nodes"].values():
        node.pop("kind")
    doc["topology"]["defaults"] = {"kind": "linux", "labels": {"team": "lb"}}
    doc["topology"]["nodes"]["ilb-seg"]["kind"] = "bridge"
    topology = parse_topology(doc)
    assert topology.node("node1").kind == "linux" and topology.node("node1").labels["team"] == "lb"
    assert topology.node("node1").image == "ironlb/lab-node:latest"  # from topology.kinds.linux


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=12),
    prefix=st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True),
    with_v6=st.booleans(),
)
def test_generated_labs_plan_consistently(count, prefix, with_v6):
    nodes: dict[str, Any] = {"seg": {"kind": "bridge"}}
    links = []
    for i in range(1, count + 1):
        labels = {
            "ironlb.io/role": "k8s-node",
            "ironlb.io/ipv4": f"192.168.50.{i}/24",
            "ironlb.io/pod-cidr": f"10.200.{i}.0/24",
        }
        if with_v6:
            labels |= {"ironlb.io/ipv6": f"fd00:50::{i}/64", "ironlb.io/pod-cidr6": f"fd00:200:{i}::/64"}
        nodes[f"worker{i}"] = {"kind": "linux", "labels": labels}
        links.append({"endpoints": [f"worker{i}:eth1", f"seg:w{i}"]})
    doc = {"name": "gen", "prefix": prefix, "topology": {"nodes": nodes, "links": links}}
    plan = plan_lab(parse_topology(doc))
    per_node = (2 if with_v6 else 1) * (count - 1)
    assert all(len(n.routes) == per_node for n in plan.nodes)
    assert len({n.mgmt_ipv4 for n in plan.nodes}) == count
    for n in plan.nodes:
        assert len(n.host_veth) <= IFNAMSIZ
        for route in n.routes:
            peer = next(p for p in plan.nodes if route.dest in (p.pod_cidr, p.pod_cidr6))
            assert peer is not n
            assert route.via in {a.ip for a in (peer.ipv4, peer.ipv6) if a is not None}
