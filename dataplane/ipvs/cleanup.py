"""Removing IPVS mode's kernel objects (thin): `--cleanup`, and a node that switched to another mode.

Ours are the virtual servers on kube-ipvs0's addresses and on our node ports (read from our ipsets), the
interface kube-ipvs0 and the KUBE-* ipsets; any other virtual server stays. The iptables chains are
dataplane.cleanup's; they must be gone before the sets, which the kernel will not destroy while a rule uses
them.

Deleting a virtual server resets the connections IPVS carries for it (whatever expire_nodest_conn says).
So a node switching to another mode (`drain`) deletes only the idle ones: the new mode's DNAT rules take
every new connection before IPVS sees it (nat PREROUTING and OUTPUT come first), while the packets of an
established IPVS connection still find their virtual server, kube-ipvs0's address and, on the way back,
our ipsets' entries that name our node ports. Those stay until a later call finds no connection left.
`--cleanup` removes everything at once.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

from dataplane.ipvs import netlink as nl
from dataplane.ipvs.kernel import IpvsError, NetlinkSocket, ipvs_family, parse_ipset_save
from dataplane.ipvs.render import INTERFACE, SET_NAMES, VirtualServer, node_ports

log = logging.getLogger("dataplane.ipvs")


def _run(argv: list[str], text: str | None = None) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # the tool is missing: none of its objects can be here


def _addresses() -> set[str]:
    try:
        index = socket.if_nametoindex(INTERFACE)
    except OSError:
        return set()
    sock = NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        found = set()
        for message in sock.dump(nl.dump_addresses()):
            info = nl.parse_address(message)
            if info is not None and info.index == index:
                found.add(info.ip)
        return found
    finally:
        sock.close()


def _connections(sock: NetlinkSocket, family_id: int, vs: VirtualServer) -> int:
    """The connections deleting `vs` would cut: established ones (a TCP connection in TIME_WAIT or CLOSE is
    done); for UDP, which IPVS counts as inactive only, every flow it still remembers."""
    dests = [nl.parse_dest(m) for m in sock.dump(nl.dump_dests(family_id, vs))]
    return sum(d.active + (d.inactive if vs.protocol == "UDP" else 0) for d in dests)


def _virtual_servers(
    addresses: set[str], node_ports: dict[tuple[int, str], set[int]], drain: bool
) -> tuple[int, int]:
    """Delete our virtual servers (with `drain`, the idle ones); the number of failures, and of those left
    because they still carry connections."""
    if not Path("/proc/net/ip_vs").exists():
        return 0, 0  # IPVS is not loaded: there is nothing of ours (and asking would load it)
    sock = NetlinkSocket(nl.NETLINK_GENERIC)
    try:
        family_id = ipvs_family(sock)
        ours: list[VirtualServer] = []
        for message in sock.dump(nl.dump_services(family_id)):
            parsed = nl.parse_service(message)
            if parsed is None:
                continue
            vs = parsed[0]
            if vs.address in addresses or vs.port in node_ports.get((vs.family, vs.protocol), set()):
                ours.append(vs)
        busy = [vs for vs in ours if drain and _connections(sock, family_id, vs)]
        idle = [vs for vs in ours if vs not in busy]
        codes = sock.transact([nl.service(family_id, nl.IPVS_CMD_DEL_SERVICE, vs) for vs in idle])
        failures = sum(1 for code in codes if code)
        log.info("event=cleaned virtual_servers=%d failures=%d draining=%d", len(idle), failures, len(busy))
        return failures, len(busy)
    except (IpvsError, OSError) as exc:
        log.error("event=cleanup_failed what=virtual_servers error=%s", exc)
        return 1, 0
    finally:
        sock.close()


def cleanup_ipvs(drain: bool = False) -> int:
    """Remove IPVS mode's virtual servers, kube-ipvs0 and ipsets from this netns; the number of failures,
    plus, with `drain`, of the virtual servers left to their connections (kube-ipvs0 and the ipsets stay
    with them): the caller tries again later."""
    failures = 0
    saved = _run(["ipset", "save"])
    entries = parse_ipset_save(saved.stdout, {n: k for n, (k, _) in SET_NAMES.items()}) if saved else {}
    failed, busy = _virtual_servers(_addresses(), node_ports(entries), drain)
    if busy:
        log.info(
            "event=ipvs_draining virtual_servers=%d reason='they carry connections: kept, with kube-ipvs0 "
            "and the ipsets, until those end'",
            busy,
        )
        return failed + busy
    failures += failed
    try:
        socket.if_nametoindex(INTERFACE)
    except OSError:
        pass
    else:
        done = _run(["ip", "link", "delete", INTERFACE])
        if done is None or done.returncode != 0:
            failures += 1
            log.error(
                "event=cleanup_failed interface=%s error=%s", INTERFACE, done.stderr.strip() if done else ""
            )
        else:
            log.info("event=cleaned interface=%s", INTERFACE)
    listed = _run(["ipset", "list", "-n"])
    names = listed.stdout.split() if listed is not None and listed.returncode == 0 else []
    present = [name for name in names if name in SET_NAMES]
    if present:
        done = _run(["ipset", "restore"], "".join(f"destroy {name}\n" for name in present))
        if done is None or done.returncode != 0:
            failures += 1
            log.error(
                "event=cleanup_failed what=ipsets error=%s", done.stderr.strip() if done else "no ipset"
            )
        else:
            log.info("event=cleaned ipsets=%d", len(present))
    return failures
