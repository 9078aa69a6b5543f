"""Removing IPVS mode's kernel objects (thin): `--cleanup`, and a node that switched to another mode.

Ours are the virtual servers on kube-ipvs0's addresses and on our node ports (read from our ipsets), the
interface kube-ipvs0 and the KUBE-* ipsets; any other virtual server stays. Connections that IPVS already
carries keep flowing after their virtual server is gone (expire_nodest_conn is turned off first), so a
switch to another mode does not cut them. The iptables chains are dataplane.cleanup's; they must be gone
before the sets, which the kernel will not destroy while a rule uses them.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

from dataplane.ipvs import netlink as nl
from dataplane.ipvs.kernel import SYSCTL, IpvsError, NetlinkSocket, ipvs_family, parse_ipset_save
from dataplane.ipvs.render import INTERFACE, SET_NAMES, VirtualServer, node_ports

log = logging.getLogger("dataplane.ipvs")

EXPIRE_NODEST = SYSCTL / "net/ipv4/vs/expire_nodest_conn"


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


def _virtual_servers(addresses: set[str], node_ports: dict[tuple[int, str], set[int]]) -> int:
    """Delete our virtual servers; the number of failures."""
    if not Path("/proc/net/ip_vs").exists():
        return 0  # IPVS is not loaded: there is nothing of ours (and asking would load it)
    if EXPIRE_NODEST.exists():
        EXPIRE_NODEST.write_text("0")
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
        codes = sock.transact([nl.service(family_id, nl.IPVS_CMD_DEL_SERVICE, vs) for vs in ours])
        failures = sum(1 for code in codes if code)
        log.info("event=cleaned virtual_servers=%d failures=%d", len(ours), failures)
        return failures
    except (IpvsError, OSError) as exc:
        log.error("event=cleanup_failed what=virtual_servers error=%s", exc)
        return 1
    finally:
        sock.close()


def cleanup_ipvs() -> int:
    """Remove IPVS mode's virtual servers, kube-ipvs0 and ipsets from this netns; the number of failures."""
    failures = 0
    saved = _run(["ipset", "save"])
    entries = parse_ipset_save(saved.stdout, {n: k for n, (k, _) in SET_NAMES.items()}) if saved else {}
    failures += _virtual_servers(_addresses(), node_ports(entries))
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
