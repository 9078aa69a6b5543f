"""Stale UDP conntrack entries: which to delete after a sync (pure), and deleting them (thin).

UDP has no connection end, so a conntrack entry keeps sending a client's datagrams to the endpoint chosen for
the first one, even after that endpoint is gone: a DNS-like client would never switch. As kube-proxy
(pkg/proxy/conntrack/cleanup.go), after each successful sync:

- for every endpoint a UDP service port no longer forwards to, delete the entries DNATed to it (for each
  service address and for the NodePort);
- for every UDP service port that had no endpoint and now has one, delete the entries to its addresses: while
  it had none, the first datagram was rejected and its entry would keep the flow from ever being DNATed.

Same for every mode (the entries are the kernel's, whoever NATed them), so it lives beside the sync loop.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable, Set
from dataclasses import dataclass

from dataplane.model import ServiceKey, ServicePort
from dataplane.selection import select
from dataplane.tracker import Snapshot

log = logging.getLogger("dataplane.conntrack")


@dataclass(frozen=True, slots=True, order=True)
class Flush:
    """One `conntrack -D`: UDP entries to `address` (any when "") on `port`, DNATed to `endpoint` (any
    when "")."""

    family: int
    address: str
    port: int
    endpoint: str

    def argv(self) -> list[str]:
        argv = ["conntrack", "-D", "-f", "ipv4" if self.family == 4 else "ipv6", "-p", "udp"]
        if self.address:
            argv += ["--orig-dst", self.address]
        argv += ["--orig-port-dst", str(self.port)]
        if self.endpoint:
            argv += ["--dst-nat", self.endpoint]
        return argv


def _addresses(port: ServicePort) -> list[str]:
    return [port.cluster_ip, *port.external_ips, *port.load_balancer_ips]


def _udp_ports(
    snapshot: Snapshot, key: ServiceKey
) -> dict[tuple[str, int], tuple[ServicePort, set[str], bool]]:
    """(port name, family) -> (port, endpoint IPs it forwards to, has any endpoint)."""
    info = snapshot.services.get(key)
    found = {}
    if info is not None:
        for port, endpoints in info.port_endpoints():
            if port.protocol == "UDP":
                sel = select(port, endpoints)
                found[(port.port_name, port.family)] = (port, {ep.ip for ep in sel.reachable}, sel.has_any)
    return found


def stale_flows(before: Snapshot, after: Snapshot, keys: Iterable[ServiceKey]) -> list[Flush]:
    """What to delete after moving from `before` to `after`, looking at the Services `keys`."""
    flushes: set[Flush] = set()
    for key in keys:
        old = _udp_ports(before, key)
        for ident, (port, targets, has_any) in _udp_ports(after, key).items():
            previous = old.get(ident)
            old_targets, old_port = (previous[1], previous[0]) if previous else (set(), port)
            for endpoint in sorted(old_targets - targets):
                for address in _addresses(old_port):
                    flushes.add(Flush(port.family, address, old_port.port, endpoint))
                if old_port.node_port:
                    flushes.add(Flush(port.family, "", old_port.node_port, endpoint))
            if has_any and not (previous and previous[2]):
                for address in _addresses(port):
                    flushes.add(Flush(port.family, address, port.port, ""))
                if port.node_port:
                    flushes.add(Flush(port.family, "", port.node_port, ""))
        for ident, (port, targets, _) in old.items():
            if ident in _udp_ports(after, key):
                continue
            for endpoint in sorted(targets):  # the port or the whole Service is gone
                for address in _addresses(port):
                    flushes.add(Flush(port.family, address, port.port, endpoint))
                if port.node_port:
                    flushes.add(Flush(port.family, "", port.node_port, endpoint))
    return sorted(flushes)


def changed_keys(before: Snapshot, after: Snapshot, changed: Set[ServiceKey] | None) -> Set[ServiceKey]:
    """The Services to compare: the changed ones, or after a full sync all of them."""
    if changed is not None:
        return changed
    return set(before.services) | set(after.services)


def flush(flushes: Iterable[Flush]) -> int:
    """Run the deletes; returns how many failed (logged). No entry to delete is not a failure."""
    failures = 0
    for item in flushes:
        try:
            result = subprocess.run(item.argv(), capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("event=conntrack_failed argv=%r error=%s", item.argv(), exc)
            failures += 1
            continue
        if result.returncode != 0 and "0 flow entries" not in result.stderr:
            log.warning("event=conntrack_failed argv=%r error=%s", item.argv(), result.stderr.strip())
            failures += 1
        else:
            log.info(
                "event=conntrack_flushed family=ipv%d address=%s port=%d endpoint=%s",
                item.family,
                item.address or "*",
                item.port,
                item.endpoint or "*",
            )
    return failures
