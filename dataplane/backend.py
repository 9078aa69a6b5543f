"""The one interface every mode implements (kube-proxy's proxy.Provider, reduced to what the sync loop needs).

A backend turns snapshots into kernel state for its mode: iptables (dataplane.iptables), nftables and IPVS
(issues 13 and 14). Each renders its desired state from the snapshot with pure functions, keeps its own record
of what it wrote (it never lists the kernel to find it), and writes either everything (a full sync) or only
the Services that changed (a partial sync). The sync loop (dataplane.sync) decides which, owns timing,
metrics, health checks and conntrack cleanup, all of which are the same for every mode.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Set
from dataclasses import dataclass, replace
from typing import Protocol

from dataplane.model import ServiceKey
from dataplane.tracker import Snapshot

MODES = ("iptables", "nftables", "ipvs")


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """What a backend needs to know about the node it programs."""

    name: str
    addresses: tuple[str, ...] = ()  # the node's own addresses (both families)
    # The node addresses NodePorts listen on (--nodeport-addresses); None: every local address.
    nodeport_addresses: tuple[str, ...] | None = None
    # Where pod traffic comes from (--cluster-cidr, else the Node's podCIDRs): see RenderConfig.local_cidrs.
    pod_cidrs: tuple[str, ...] = ()
    # Every address on the node's interfaces, read only by the modes that need them (IPVS makes a NodePort
    # virtual server on each).
    local_addresses: tuple[str, ...] = ()

    def addresses_of(self, family: int) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if ipaddress.ip_address(a).version == family)

    def nodeport_addresses_of(self, family: int) -> tuple[str, ...] | None:
        if self.nodeport_addresses is None:
            return None
        return tuple(a for a in self.nodeport_addresses if ipaddress.ip_address(a).version == family)

    def node_port_addresses(self) -> tuple[str, ...]:
        """The addresses NodePorts answer on: --nodeport-addresses' selection, else every local address."""
        return self.local_addresses if self.nodeport_addresses is None else self.nodeport_addresses

    def pod_cidrs_of(self, family: int) -> tuple[str, ...]:
        return tuple(c for c in self.pod_cidrs if ipaddress.ip_network(c).version == family)


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """What a mode renders one address family's rules with: this node's facts and the daemon's options."""

    family: int  # 4 or 6
    # Where pod traffic comes from (the cluster's or this node's pod CIDRs of this family): traffic to a
    # cluster IP from elsewhere is masqueraded, and pods short-circuit to Cluster endpoints for external
    # destinations with externalTrafficPolicy Local. Empty: no such rules (kube-proxy's "no local detector").
    local_cidrs: tuple[str, ...] = ()
    node_ips: tuple[str, ...] = ()  # this node's addresses of this family
    nodeport_ips: tuple[str, ...] | None = None  # None: NodePorts on every local address; else on these only
    masquerade_mark: int = 0x4000
    random_fully: bool = True
    comments: bool = True  # comments in the rules (dropped above 1,000 endpoints, as kube-proxy does)
    # Drop conntrack state INVALID in the forward hook (kube-proxy's KUBE-FORWARD; it skips the rule with
    # tcp_be_liberal).
    drop_invalid: bool = True

    @property
    def mark(self) -> str:
        return f"{self.masquerade_mark:#x}"

    def for_node(self, node: NodeNetwork, family: int, comments: bool) -> RenderConfig:
        """This config for one family of `node`."""
        return replace(
            self,
            family=family,
            local_cidrs=node.pod_cidrs_of(family),
            node_ips=node.addresses_of(family),
            nodeport_ips=node.nodeport_addresses_of(family),
            comments=comments,
        )


@dataclass(frozen=True, slots=True)
class SyncReport:
    full: bool  # everything was rewritten
    services: int  # Services rewritten (all of them for a full sync)
    detail: str = ""  # mode-specific, for the log line (e.g. "backend=nft rules=1234")


class SyncError(RuntimeError):
    """Writing failed; the kernel state is unknown, so the next sync must be a full one."""


class Backend(Protocol):
    """One mode. Called only from the sync loop's thread."""

    mode: str

    def sync(self, snapshot: Snapshot, changed: Set[ServiceKey] | None) -> SyncReport:
        """Make the kernel match `snapshot`. `changed` None: rewrite everything (a full sync); otherwise only
        those Services changed since the previous successful sync. A backend may do a full sync anyway (its
        record is not trusted yet, or the node's network changed). Raises SyncError on failure."""
        ...

    def set_node(self, node: NodeNetwork) -> None:
        """The node's addresses or pod CIDRs changed; the next sync is a full one."""
        ...

    def flushed(self) -> bool:
        """Someone removed this mode's state behind our back (kube-proxy's canary): sync everything again."""
        ...
