"""Containerlab topology files -> a validated model -> a pure plan of the network-namespace lab.

Everything here is pure: no kernel, no subprocess. `parse_topology` turns the YAML document (already
loaded into plain Python data) into a `Topology`, rejecting anything the netns runner cannot build with an
error naming the field. `plan_lab` computes every name, address and route of the lab (`LabPlan`), and
`render_*` turn the plan into the `ip -batch` lines and sysctls the thin shell in lab/network.py applies.

Naming (the lab prefix P is short so every Linux interface name stays within 15 characters):
- netns of a node: `P-<node>`; netns holding the lab's bridges (kind: bridge): `P-sw`; pod netns (made by the
  kubelet): `P-p-<hash>`.
- host side: the management bridge `P-mgmt` and one veth per node, `P-<node>` (or `P-m<index>` when that is
  too long).
- inside a node: `eth0` is management (as in containerlab), data links keep the names the file gives them, the
  pod bridge is `cbr0`.

ironlb-specific node data lives in containerlab node labels (string values), see LABEL_* and docs/lab.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any, Literal

import yaml

LABEL_ROLE = "ironlb.io/role"
LABEL_IPV4 = "ironlb.io/ipv4"
LABEL_IPV6 = "ironlb.io/ipv6"
LABEL_IFACE = "ironlb.io/iface"
LABEL_POD_CIDR = "ironlb.io/pod-cidr"
LABEL_POD_CIDR6 = "ironlb.io/pod-cidr6"
LABEL_K8S_NODE_NAME = "ironlb.io/k8s-node-name"
LABEL_NODE_LABELS = "ironlb.io/node-labels"
KNOWN_LABELS = frozenset(
    {
        LABEL_ROLE,
        LABEL_IPV4,
        LABEL_IPV6,
        LABEL_IFACE,
        LABEL_POD_CIDR,
        LABEL_POD_CIDR6,
        LABEL_K8S_NODE_NAME,
        LABEL_NODE_LABELS,
    }
)
ROLE_K8S_NODE = "k8s-node"
ROLE_CLIENT = "client"
ROLES = (ROLE_K8S_NODE, ROLE_CLIENT)

DEFAULT_STATE_ROOT = Path("/run/ironlb-lab")
# containerlab's own defaults, used when the file has no mgmt section.
DEFAULT_MGMT_IPV4 = "172.20.20.0/24"
DEFAULT_MGMT_IPV6 = "3fff:172:20:20::/64"
MGMT_IFACE = "eth0"
POD_BRIDGE = "cbr0"
# The API server's Service ranges (lab.runner starts it with these).
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_CIDR6 = "fd00:10:96::/112"
SWITCH_NETNS_SUFFIX = "sw"
MGMT_BRIDGE_SUFFIX = "mgmt"
IFNAMSIZ = 15

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_LAB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_NODE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_SUPPORTED_KINDS = ("linux", "bridge")


def is_valid_prefix(prefix: str) -> bool:
    return bool(_PREFIX_RE.match(prefix))


class TopologyError(ValueError):
    """A topology file the netns runner cannot build; the message names the file and the field."""


# ----------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Endpoint:
    node: str
    iface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Node:
    name: str
    kind: Literal["linux", "bridge"]
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exec: tuple[str, ...] = ()
    mgmt_ipv4: IPv4Address | None = None
    mgmt_ipv6: IPv6Address | None = None


@dataclass(frozen=True)
class Topology:
    """A containerlab topology, as far as the netns runner understands it."""

    name: str
    prefix: str
    mgmt_ipv4_subnet: IPv4Network
    mgmt_ipv6_subnet: IPv6Network | None
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    source: str = "<topology>"

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------------- parsing


def _where(source: str, path: str) -> str:
    return f"{source}: {path}"


def _mapping(value: object, source: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TopologyError(f"{_where(source, path)}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TopologyError(f"{_where(source, path)}: key {key!r} must be a string")
    return value


def _string(value: object, source: str, path: str) -> str:
    if not isinstance(value, str):
        raise TopologyError(f"{_where(source, path)}: expected a string, got {value!r} (quote it in YAML)")
    return value


def _ipv4_addr(value: object, source: str, path: str) -> IPv4Address:
    text = _string(value, source, path)
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv4 address") from None


def _ipv6_addr(value: object, source: str, path: str) -> IPv6Address:
    text = _string(value, source, path)
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv6 address") from None


def _ipv4_net(value: object, source: str, path: str) -> IPv4Network:
    text = _string(value, source, path)
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv4 network ({exc})") from None


def _ipv6_net(value: object, source: str, path: str) -> IPv6Network:
    text = _string(value, source, path)
    try:
        return ipaddress.IPv6Network(text)
    except ValueError as exc:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv6 network ({exc})") from None


def _ipv4_iface(value: object, source: str, path: str) -> IPv4Interface:
    text = _string(value, source, path)
    if "/" not in text:
        raise TopologyError(f"{_where(source, path)}: {text!r} needs a prefix length, e.g. 192.168.10.11/24")
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv4 address/prefix") from None
    if iface.ip == iface.network.network_address and iface.network.prefixlen < 31:
        raise TopologyError(f"{_where(source, path)}: {text!r} is the network address, not a host address")
    return iface


def _ipv6_iface(value: object, source: str, path: str) -> IPv6Interface:
    text = _string(value, source, path)
    if "/" not in text:
        raise TopologyError(f"{_where(source, path)}: {text!r} needs a prefix length, e.g. fd00:10::11/64")
    try:
        return ipaddress.IPv6Interface(text)
    except ValueError:
        raise TopologyError(f"{_where(source, path)}: {text!r} is not an IPv6 address/prefix") from None


def load_topology(path: Path | str) -> Topology:
    """Read and parse a topology file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read topology file: {exc.strerror}") from None
    return parse_topology_text(text, source=str(path))


def parse_topology_text(text: str, source: str = "<topology>") -> Topology:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: not valid YAML: {exc}") from None
    return parse_topology(document, source=source)


def parse_topology(document: object, source: str = "<topology>") -> Topology:
    """Validate a loaded containerlab document and build the model."""
    doc = _mapping(document, source, "(top level)")
    if "name" not in doc:
        raise TopologyError(f"{source}: name: missing (containerlab requires the lab name)")
    name = _string(doc["name"], source, "name")
    if not _LAB_NAME_RE.match(name):
        raise TopologyError(f"{_where(source, 'name')}: {name!r} must be letters, digits, '_', '.', '-'")

    raw_prefix = doc.get("prefix")
    prefix = "" if raw_prefix is None else _string(raw_prefix, source, "prefix")
    if not prefix:
        prefix = name
    if not _PREFIX_RE.match(prefix):
        raise TopologyError(
            f"{_where(source, 'prefix')}: lab prefix {prefix!r} must be 1-8 lowercase letters/digits "
            "starting with a letter (it prefixes every interface name, which Linux limits to 15 characters); "
            "set `prefix:` in the file"
        )

    mgmt = _mapping(doc.get("mgmt") or {}, source, "mgmt")
    mgmt4 = _ipv4_net(mgmt.get("ipv4-subnet", DEFAULT_MGMT_IPV4), source, "mgmt.ipv4-subnet")
    mgmt6: IPv6Network | None = None
    raw6 = mgmt.get("ipv6-subnet", DEFAULT_MGMT_IPV6)
    if raw6 not in (None, ""):
        mgmt6 = _ipv6_net(raw6, source, "mgmt.ipv6-subnet")
    if mgmt4.num_addresses < 4:
        raise TopologyError(f"{_where(source, 'mgmt.ipv4-subnet')}: {mgmt4} is too small for a lab")

    topo = _mapping(doc.get("topology"), source, "topology")
    defaults = _mapping(topo.get("defaults") or {}, source, "topology.defaults")
    kinds = _mapping(topo.get("kinds") or {}, source, "topology.kinds")
    raw_nodes = _mapping(topo.get("nodes"), source, "topology.nodes")
    if not raw_nodes:
        raise TopologyError(f"{_where(source, 'topology.nodes')}: no nodes")

    nodes = tuple(_parse_node(nname, raw, defaults, kinds, source) for nname, raw in raw_nodes.items())
    links = _parse_links(topo.get("links") or [], {n.name: n for n in nodes}, source)
    topology = Topology(
        name=name,
        prefix=prefix,
        mgmt_ipv4_subnet=mgmt4,
        mgmt_ipv6_subnet=mgmt6,
        nodes=nodes,
        links=links,
        source=source,
    )
    # Planning validates the cross-node facts (addresses, segments, routes); fail at parse time, not at `up`.
    plan_lab(topology)
    return topology


def _parse_node(
    name: str, raw: object, defaults: Mapping[str, Any], kinds: Mapping[str, Any], source: str
) -> Node:
    path = f"topology.nodes.{name}"
    if not _NODE_NAME_RE.match(name):
        raise TopologyError(
            f"{_where(source, path)}: node name must be lowercase letters, digits and '-' (it names a netns)"
        )
    if name == SWITCH_NETNS_SUFFIX or name.startswith("p-"):
        raise TopologyError(f"{_where(source, path)}: node name {name!r} is reserved by the lab runner")
    body = _mapping(raw if raw is not None else {}, source, path)
    kind_value = body.get("kind", defaults.get("kind"))
    if kind_value is None:
        raise TopologyError(f"{_where(source, path + '.kind')}: missing")
    kind = _string(kind_value, source, path + ".kind")
    if kind not in _SUPPORTED_KINDS:
        raise TopologyError(
            f"{_where(source, path + '.kind')}: kind {kind!r} is not supported by the netns runner "
            f"(supported: {', '.join(_SUPPORTED_KINDS)})"
        )
    kind_defaults = _mapping(kinds.get(kind) or {}, source, f"topology.kinds.{kind}")

    labels: dict[str, str] = {}
    for layer_path, layer in (
        ("topology.defaults.labels", defaults.get("labels")),
        (f"topology.kinds.{kind}.labels", kind_defaults.get("labels")),
        (path + ".labels", body.get("labels")),
    ):
        for key, value in _mapping(layer or {}, source, layer_path).items():
            labels[key] = _string(value, source, f"{layer_path}.{key}")
    for key in labels:
        if key.startswith("ironlb.io/") and key not in KNOWN_LABELS:
            raise TopologyError(
                f"{_where(source, path + '.labels.' + key)}: unknown ironlb label "
                f"(known: {', '.join(sorted(KNOWN_LABELS))})"
            )
    if kind == "bridge" and any(k.startswith("ironlb.io/") for k in labels):
        raise TopologyError(f"{_where(source, path + '.labels')}: ironlb labels belong on linux nodes")
    if kind == "bridge" and len(name) > IFNAMSIZ:
        raise TopologyError(f"{_where(source, path)}: a bridge's name is its interface name (max 15 chars)")

    raw_exec = body.get("exec", kind_defaults.get("exec", defaults.get("exec", [])))
    if not isinstance(raw_exec, list):
        raise TopologyError(f"{_where(source, path + '.exec')}: expected a list of commands")
    exec_lines = tuple(_string(line, source, f"{path}.exec[{i}]") for i, line in enumerate(raw_exec))
    image = body.get("image", kind_defaults.get("image", defaults.get("image", "")))
    mgmt4 = body.get("mgmt-ipv4")
    mgmt6 = body.get("mgmt-ipv6")
    return Node(
        name=name,
        kind="linux" if kind == "linux" else "bridge",
        image=_string(image, source, path + ".image"),
        labels=labels,
        exec=exec_lines,
        mgmt_ipv4=None if mgmt4 is None else _ipv4_addr(mgmt4, source, path + ".mgmt-ipv4"),
        mgmt_ipv6=None if mgmt6 is None else _ipv6_addr(mgmt6, source, path + ".mgmt-ipv6"),
    )


def _parse_endpoint(value: object, nodes: Mapping[str, Node], source: str, path: str) -> Endpoint:
    text = _string(value, source, path)
    node, sep, iface = text.partition(":")
    if not sep or not node or not iface:
        raise TopologyError(f"{_where(source, path)}: {text!r} must be 'node:interface'")
    if node not in nodes:
        raise TopologyError(f"{_where(source, path)}: node {node!r} is not defined in topology.nodes")
    if not _IFACE_RE.match(iface):
        raise TopologyError(
            f"{_where(source, path)}: interface {iface!r} must be at most 15 letters, digits, '_', '.', '-'"
        )
    if iface == MGMT_IFACE and nodes[node].kind == "linux":
        raise TopologyError(f"{_where(source, path)}: {MGMT_IFACE} is the management interface, use eth1...")
    return Endpoint(node, iface)


def _parse_links(raw: object, nodes: Mapping[str, Node], source: str) -> tuple[Link, ...]:
    if not isinstance(raw, list):
        raise TopologyError(f"{_where(source, 'topology.links')}: expected a list")
    seen: dict[Endpoint, str] = {}
    links: list[Link] = []
    for index, item in enumerate(raw):
        path = f"topology.links[{index}]"
        body = _mapping(item, source, path)
        endpoints = body.get("endpoints")
        if not isinstance(endpoints, list) or len(endpoints) != 2:
            raise TopologyError(f"{_where(source, path + '.endpoints')}: expected a list of two 'node:iface'")
        a = _parse_endpoint(endpoints[0], nodes, source, f"{path}.endpoints[0]")
        b = _parse_endpoint(endpoints[1], nodes, source, f"{path}.endpoints[1]")
        if a.node == b.node:
            raise TopologyError(f"{_where(source, path)}: both ends are on node {a.node!r}")
        if nodes[a.node].kind == "bridge" and nodes[b.node].kind == "bridge":
            raise TopologyError(f"{_where(source, path)}: links between two bridges are not supported")
        if nodes[a.node].kind == "bridge":
            a, b = b, a  # linux end first, bridge end second
        for end in (a, b):
            if end in seen:
                raise TopologyError(f"{_where(source, path)}: endpoint {end} is already used by {seen[end]}")
            seen[end] = path
        links.append(Link(a, b))
    return tuple(links)


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Route:
    dest: IPv4Network | IPv6Network
    via: IPv4Address | IPv6Address


@dataclass(frozen=True)
class Veth:
    """One veth pair; netns None means the host."""

    netns_a: str
    name_a: str
    netns_b: str | None
    name_b: str
    master_b: str | None = None


@dataclass(frozen=True)
class LabNode:
    """A linux node as the lab builds it."""

    name: str
    role: str
    netns: str
    mgmt_ipv4: IPv4Interface
    mgmt_ipv6: IPv6Interface | None
    host_veth: str
    data_ifaces: tuple[str, ...]
    iface: str | None = None
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    k8s_node_name: str | None = None
    pod_cidr: IPv4Network | None = None
    pod_cidr6: IPv6Network | None = None
    node_labels: tuple[tuple[str, str], ...] = ()
    routes: tuple[Route, ...] = ()

    @property
    def is_k8s_node(self) -> bool:
        return self.role == ROLE_K8S_NODE

    @property
    def pod_gateway4(self) -> IPv4Interface | None:
        if self.pod_cidr is None:
            return None
        return ipaddress.IPv4Interface(f"{self.pod_cidr.network_address + 1}/{self.pod_cidr.prefixlen}")

    @property
    def pod_gateway6(self) -> IPv6Interface | None:
        if self.pod_cidr6 is None:
            return None
        return ipaddress.IPv6Interface(f"{self.pod_cidr6.network_address + 1}/{self.pod_cidr6.prefixlen}")


@dataclass(frozen=True)
class LabPlan:
    name: str
    prefix: str
    switch_netns: str
    mgmt_bridge: str
    mgmt_gateway4: IPv4Interface
    mgmt_gateway6: IPv6Interface | None
    bridges: tuple[str, ...]
    nodes: tuple[LabNode, ...]
    veths: tuple[Veth, ...]

    @property
    def netns_names(self) -> tuple[str, ...]:
        return (self.switch_netns, *(n.netns for n in self.nodes))

    @property
    def k8s_nodes(self) -> tuple[LabNode, ...]:
        return tuple(n for n in self.nodes if n.is_k8s_node)

    def node(self, name: str) -> LabNode:
        """A node by its topology name or its Kubernetes node name."""
        for node in self.nodes:
            if name in (node.name, node.k8s_node_name):
                return node
        raise KeyError(name)


def host_veth_name(prefix: str, node: str, index: int) -> str:
    name = f"{prefix}-{node}"
    return name if len(name) <= IFNAMSIZ else f"{prefix}-m{index}"


def pod_netns_prefix(prefix: str) -> str:
    """Pod netns names the kubelet makes start with this, so `down` can sweep them."""
    return f"{prefix}-p-"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _node_labels(text: str, source: str, path: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TopologyError(f"{_where(source, path)}: {item!r} must be key=value")
        pairs.append((key, value))
    return tuple(pairs)


def plan_lab(topology: Topology) -> LabPlan:
    """Compute every name, address and route of the lab; raises TopologyError on inconsistent data."""
    src = topology.source
    prefix = topology.prefix
    bridges = tuple(n.name for n in topology.nodes if n.kind == "bridge")
    linux = [n for n in topology.nodes if n.kind == "linux"]
    if not linux:
        raise TopologyError(f"{src}: topology.nodes: no linux nodes")

    gateway4 = ipaddress.IPv4Interface(
        f"{topology.mgmt_ipv4_subnet.network_address + 1}/{topology.mgmt_ipv4_subnet.prefixlen}"
    )
    gateway6: IPv6Interface | None = None
    if topology.mgmt_ipv6_subnet is not None:
        gateway6 = ipaddress.IPv6Interface(
            f"{topology.mgmt_ipv6_subnet.network_address + 1}/{topology.mgmt_ipv6_subnet.prefixlen}"
        )
    mgmt4 = _allocate_mgmt(topology, gateway4.ip, 4)
    mgmt6 = _allocate_mgmt(topology, gateway6.ip, 6) if gateway6 is not None else {}

    # Which bridge (segment) each linux interface is plugged into, and direct linux<->linux links.
    segment_of: dict[Endpoint, str] = {}
    ifaces_of: dict[str, list[str]] = {n.name: [] for n in linux}
    veths: list[Veth] = []
    switch_netns = f"{prefix}-{SWITCH_NETNS_SUFFIX}"
    for link in topology.links:
        ifaces_of[link.a.node].append(link.a.iface)
        b_is_bridge = topology.node(link.b.node).kind == "bridge"
        if b_is_bridge:
            segment_of[link.a] = link.b.node
            netns_a = f"{prefix}-{link.a.node}"
            veths.append(Veth(netns_a, link.a.iface, switch_netns, link.b.iface, link.b.node))
        else:
            ifaces_of[link.b.node].append(link.b.iface)
            netns_a, netns_b = f"{prefix}-{link.a.node}", f"{prefix}-{link.b.node}"
            veths.append(Veth(netns_a, link.a.iface, netns_b, link.b.iface))

    mgmt_bridge = f"{prefix}-{MGMT_BRIDGE_SUFFIX}"
    drafts: list[LabNode] = []
    host_names: dict[str, str] = {}
    for index, node in enumerate(linux):
        path = f"topology.nodes.{node.name}.labels"
        labels = node.labels
        role = labels.get(LABEL_ROLE, ROLE_CLIENT)
        if role not in ROLES:
            raise TopologyError(f"{src}: {path}.{LABEL_ROLE}: {role!r} must be one of {', '.join(ROLES)}")
        iface = labels.get(LABEL_IFACE)
        if iface is None:
            iface = ifaces_of[node.name][0] if ifaces_of[node.name] else None
        elif iface not in ifaces_of[node.name]:
            raise TopologyError(f"{src}: {path}.{LABEL_IFACE}: node has no link on interface {iface!r}")
        ipv4 = _ipv4_iface(labels[LABEL_IPV4], src, f"{path}.{LABEL_IPV4}") if LABEL_IPV4 in labels else None
        ipv6 = _ipv6_iface(labels[LABEL_IPV6], src, f"{path}.{LABEL_IPV6}") if LABEL_IPV6 in labels else None
        if (ipv4 or ipv6) and iface is None:
            raise TopologyError(f"{src}: {path}: node has addresses but no link to put them on")
        pod4 = (
            _ipv4_net(labels[LABEL_POD_CIDR], src, f"{path}.{LABEL_POD_CIDR}")
            if LABEL_POD_CIDR in labels
            else None
        )
        pod6 = (
            _ipv6_net(labels[LABEL_POD_CIDR6], src, f"{path}.{LABEL_POD_CIDR6}")
            if LABEL_POD_CIDR6 in labels
            else None
        )
        k8s_name: str | None = None
        node_labels: tuple[tuple[str, str], ...] = ()
        if role == ROLE_K8S_NODE:
            if ipv4 is None:
                raise TopologyError(f"{src}: {path}.{LABEL_IPV4}: a k8s-node needs its node address")
            if pod4 is None:
                raise TopologyError(f"{src}: {path}.{LABEL_POD_CIDR}: a k8s-node needs a pod CIDR")
            if pod4.prefixlen > 30:
                raise TopologyError(f"{src}: {path}.{LABEL_POD_CIDR}: {pod4} is too small for pods")
            if pod6 is not None and ipv6 is None:
                raise TopologyError(
                    f"{src}: {path}.{LABEL_POD_CIDR6}: an IPv6 pod CIDR needs {LABEL_IPV6} to route it"
                )
            k8s_name = labels.get(LABEL_K8S_NODE_NAME, node.name)
            if not _K8S_NAME_RE.match(k8s_name):
                raise TopologyError(f"{src}: {path}.{LABEL_K8S_NODE_NAME}: {k8s_name!r} is not a Node name")
            node_labels = _node_labels(labels.get(LABEL_NODE_LABELS, ""), src, f"{path}.{LABEL_NODE_LABELS}")
        else:
            for key in (LABEL_POD_CIDR, LABEL_POD_CIDR6, LABEL_K8S_NODE_NAME, LABEL_NODE_LABELS):
                if key in labels:
                    raise TopologyError(f"{src}: {path}.{key}: only a {ROLE_K8S_NODE} has this label")
        host_veth = host_veth_name(prefix, node.name, index)
        if host_veth in host_names:
            raise TopologyError(f"{src}: topology.nodes.{node.name}: host interface {host_veth} clashes")
        host_names[host_veth] = node.name
        netns = f"{prefix}-{node.name}"
        veths.append(Veth(netns, MGMT_IFACE, None, host_veth, mgmt_bridge))
        drafts.append(
            LabNode(
                name=node.name,
                role=role,
                netns=netns,
                mgmt_ipv4=ipaddress.IPv4Interface(f"{mgmt4[node.name]}/{topology.mgmt_ipv4_subnet.prefixlen}"),
                mgmt_ipv6=(
                    ipaddress.IPv6Interface(f"{mgmt6[node.name]}/{gateway6.network.prefixlen}")
                    if gateway6 is not None
                    else None
                ),
                host_veth=host_veth,
                data_ifaces=tuple(ifaces_of[node.name]),
                iface=iface,
                ipv4=ipv4,
                ipv6=ipv6,
                k8s_node_name=k8s_name,
                pod_cidr=pod4,
                pod_cidr6=pod6,
                node_labels=node_labels,
            )
        )

    _check_unique_and_disjoint(topology, drafts)
    nodes = tuple(_with_routes(topology, draft, drafts, segment_of) for draft in drafts)
    return LabPlan(
        name=topology.name,
        prefix=prefix,
        switch_netns=switch_netns,
        mgmt_bridge=mgmt_bridge,
        mgmt_gateway4=gateway4,
        mgmt_gateway6=gateway6,
        bridges=bridges,
        nodes=nodes,
        veths=tuple(veths),
    )


def _allocate_mgmt(topology: Topology, gateway: IPv4Address | IPv6Address, family: int) -> dict[str, Any]:
    """Management addresses: the file's mgmt-ipv4/-ipv6 when given, else the next free ones after the
    gateway."""
    subnet = topology.mgmt_ipv4_subnet if family == 4 else topology.mgmt_ipv6_subnet
    assert subnet is not None
    field_name = f"mgmt-ipv{family}"
    taken: dict[Any, str] = {gateway: "the gateway"}
    result: dict[str, Any] = {}
    linux = [n for n in topology.nodes if n.kind == "linux"]
    for node in linux:
        wanted = node.mgmt_ipv4 if family == 4 else node.mgmt_ipv6
        if wanted is None:
            continue
        path = f"{topology.source}: topology.nodes.{node.name}.{field_name}"
        if wanted not in subnet or wanted in (subnet.network_address, subnet.broadcast_address):
            raise TopologyError(f"{path}: {wanted} is not a host address of the mgmt subnet {subnet}")
        if wanted in taken:
            raise TopologyError(f"{path}: {wanted} is already used by {taken[wanted]}")
        taken[wanted] = f"node {node.name}"
        result[node.name] = wanted
    candidate = gateway + 1
    for node in linux:
        if node.name in result:
            continue
        while candidate in taken:
            candidate += 1
        if candidate not in subnet or candidate == subnet.broadcast_address:
            raise TopologyError(f"{topology.source}: mgmt.ipv{family}-subnet: {subnet} has too few addresses")
        taken[candidate] = f"node {node.name}"
        result[node.name] = candidate
    return result


def _check_unique_and_disjoint(topology: Topology, nodes: Sequence[LabNode]) -> None:
    src = topology.source
    owners: dict[object, str] = {}
    for node in nodes:
        for ip in (node.ipv4, node.ipv6):
            if ip is None:
                continue
            if ip.ip in owners:
                raise TopologyError(
                    f"{src}: topology.nodes.{node.name}.labels: address {ip.ip} is also used by "
                    f"{owners[ip.ip]}"
                )
            owners[ip.ip] = f"node {node.name}"
    k8s_names: dict[str, str] = {}
    for node in nodes:
        if node.k8s_node_name is None:
            continue
        if node.k8s_node_name in k8s_names:
            raise TopologyError(
                f"{src}: topology.nodes.{node.name}.labels.{LABEL_K8S_NODE_NAME}: "
                f"{node.k8s_node_name!r} is also the Node name of {k8s_names[node.k8s_node_name]}"
            )
        k8s_names[node.k8s_node_name] = node.name
    # Pod CIDRs, segments and the mgmt subnet must not overlap, or routes become ambiguous.
    networks: list[tuple[IPv4Network | IPv6Network, str]] = [(topology.mgmt_ipv4_subnet, "mgmt.ipv4-subnet")]
    if topology.mgmt_ipv6_subnet is not None:
        networks.append((topology.mgmt_ipv6_subnet, "mgmt.ipv6-subnet"))
    for node in nodes:
        for pod, key in ((node.pod_cidr, LABEL_POD_CIDR), (node.pod_cidr6, LABEL_POD_CIDR6)):
            if pod is not None:
                networks.append((pod, f"topology.nodes.{node.name}.labels.{key}"))
    segments: list[tuple[IPv4Network | IPv6Network, str]] = []
    for node in nodes:
        for ip, key in ((node.ipv4, LABEL_IPV4), (node.ipv6, LABEL_IPV6)):
            if ip is not None:
                segments.append((ip.network, f"topology.nodes.{node.name}.labels.{key}"))
    for i, (net, where) in enumerate(networks):
        for other, other_where in networks[i + 1 :] + segments:
            if net.version == other.version and net.overlaps(other):
                raise TopologyError(f"{src}: {where}: {net} overlaps {other} ({other_where})")


def _with_routes(
    topology: Topology, node: LabNode, nodes: Sequence[LabNode], segment_of: Mapping[Endpoint, str]
) -> LabNode:
    """Routes from `node` to every other k8s node's pod CIDRs, via that node's address on a shared segment."""
    if not node.is_k8s_node:
        return node
    src = topology.source
    my_segment = segment_of.get(Endpoint(node.name, node.iface or ""))
    routes: list[Route] = []
    for peer in nodes:
        if peer is node or not peer.is_k8s_node:
            continue
        peer_segment = segment_of.get(Endpoint(peer.name, peer.iface or ""))
        if my_segment is None or my_segment != peer_segment:
            raise TopologyError(
                f"{src}: topology.nodes.{peer.name}: k8s nodes {node.name} and {peer.name} must share one "
                "segment bridge so pod CIDRs can be routed between them"
            )
        assert node.ipv4 is not None and peer.ipv4 is not None and peer.pod_cidr is not None
        if peer.ipv4.ip not in node.ipv4.network:
            raise TopologyError(
                f"{src}: topology.nodes.{peer.name}.labels.{LABEL_IPV4}: {peer.ipv4} is not in "
                f"{node.name}'s subnet {node.ipv4.network}"
            )
        routes.append(Route(peer.pod_cidr, peer.ipv4.ip))
        if peer.pod_cidr6 is not None:
            assert peer.ipv6 is not None
            if node.ipv6 is None or peer.ipv6.ip not in node.ipv6.network:
                raise TopologyError(
                    f"{src}: topology.nodes.{peer.name}.labels.{LABEL_IPV6}: {peer.ipv6} is not on-link "
                    f"for {node.name}, so its IPv6 pod CIDR cannot be routed"
                )
            routes.append(Route(peer.pod_cidr6, peer.ipv6.ip))
    return replace(node, routes=tuple(routes))


# ----------------------------------------------------------------------------------------------- rendering


def _iface_sysctl(iface: str, key: str) -> str:
    # sysctl reads '.' as a separator; an interface name with a dot (eth1.10) needs the '/' form.
    return f"net/ipv6/conf/{iface}/{key}" if "." in iface else f"net.ipv6.conf.{iface}.{key}"


def node_sysctls(node: LabNode) -> dict[str, str]:
    """Sysctls inside a node: k8s nodes route between pods and the segment; nobody waits for IPv6 DAD (the
    `default` value covers interfaces made later, e.g. pod veths; existing ones need their own key)."""
    values = {
        "net.ipv6.conf.all.accept_dad": "0",
        "net.ipv6.conf.default.accept_dad": "0",
    }
    for iface in (MGMT_IFACE, *node.data_ifaces):
        values[_iface_sysctl(iface, "accept_dad")] = "0"
    if node.is_k8s_node:
        values["net.ipv4.ip_forward"] = "1"
        values["net.ipv6.conf.all.forwarding"] = "1"
    return values


def render_node_commands(node: LabNode) -> list[str]:
    """The `ip` commands (without the leading `ip`) that configure a node from inside: the same list goes to
    `ip -n <netns> -batch -` here and, prefixed with `ip `, into the node's containerlab `exec`."""
    lines: list[str] = []
    if node.iface is not None:
        lines.append(f"link set {node.iface} up")
        if node.ipv4 is not None:
            lines.append(f"addr add {node.ipv4} dev {node.iface}")
        if node.ipv6 is not None:
            lines.append(f"addr add {node.ipv6} dev {node.iface} nodad")
    if node.is_k8s_node:
        lines.append(f"link add {POD_BRIDGE} type bridge")
        lines.append(f"link set {POD_BRIDGE} up")
        if node.pod_gateway4 is not None:
            lines.append(f"addr add {node.pod_gateway4} dev {POD_BRIDGE}")
        if node.pod_gateway6 is not None:
            lines.append(f"addr add {node.pod_gateway6} dev {POD_BRIDGE} nodad")
    for route in node.routes:
        lines.append(f"route add {route.dest} via {route.via}")
    if node.is_k8s_node and node.iface is not None:
        # A real node reaches Service IPs through its default route, and its dataplane DNATs them on the
        # way out; lab nodes have no default route, so the Service range gets one of its own.
        lines.append(f"route add {SERVICE_CIDR} dev {node.iface}")
        if node.ipv6 is not None:
            lines.append(f"route add {SERVICE_CIDR6} dev {node.iface}")
    return lines


def render_containerlab_exec(node: LabNode) -> list[str]:
    """What the node's `exec:` list in the .clab.yml holds, so containerlab configures the node the same."""
    sysctls = [f"sysctl -w {key}={value}" for key, value in node_sysctls(node).items()]
    return sysctls + [f"ip {line}" for line in render_node_commands(node)]


def render_host_batch(plan: LabPlan) -> list[str]:
    """`ip -batch` lines run in the host netns: namespaces, the mgmt bridge, every veth pair."""
    lines = [f"netns add {ns}" for ns in plan.netns_names]
    lines.append(f"link add {plan.mgmt_bridge} type bridge")
    lines.append(f"addr add {plan.mgmt_gateway4} dev {plan.mgmt_bridge}")
    if plan.mgmt_gateway6 is not None:
        lines.append(f"addr add {plan.mgmt_gateway6} dev {plan.mgmt_bridge} nodad")
    lines.append(f"link set {plan.mgmt_bridge} up")
    for veth in plan.veths:
        peer = f"peer name {veth.name_b}" + (f" netns {veth.netns_b}" if veth.netns_b else "")
        lines.append(f"link add {veth.name_a} netns {veth.netns_a} type veth {peer}")
        if veth.netns_b is None:
            if veth.master_b:
                lines.append(f"link set {veth.name_b} master {veth.master_b}")
            lines.append(f"link set {veth.name_b} up")
    return lines


def render_switch_batch(plan: LabPlan) -> list[str]:
    """`ip -batch` lines inside the switch netns: the lab's layer-2 segments and their ports."""
    lines: list[str] = ["link set lo up"]
    for bridge in plan.bridges:
        # No multicast snooping: IPv6 neighbour discovery and the speaker's announcements must always flood.
        lines.append(f"link add {bridge} type bridge mcast_snooping 0")
        lines.append(f"link set {bridge} up")
    for veth in plan.veths:
        if veth.netns_b == plan.switch_netns:
            lines.append(f"link set {veth.name_b} master {veth.master_b}")
            lines.append(f"link set {veth.name_b} up")
    return lines


def render_node_batch(plan: LabPlan, node: LabNode) -> list[str]:
    """`ip -batch` lines inside a node netns: loopback, management, then the node's own configuration."""
    lines = ["link set lo up", f"link set {MGMT_IFACE} up", f"addr add {node.mgmt_ipv4} dev {MGMT_IFACE}"]
    if node.mgmt_ipv6 is not None:
        lines.append(f"addr add {node.mgmt_ipv6} dev {MGMT_IFACE} nodad")
    for iface in node.data_ifaces:
        if iface != node.iface:
            lines.append(f"link set {iface} up")
    lines.extend(render_node_commands(node))
    return lines
