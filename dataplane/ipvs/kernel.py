"""IPVS mode's kernel I/O in the current network namespace (thin): netlink sockets that send netlink.py's
messages in batches, the kube-ipvs0 interface, ipsets, sysctls, and the check that this kernel has IPVS.

Partial syncs never start a process: IPVS, ipset entries and addresses all go over netlink from this process.
Processes only run at start and in full syncs, once each (`ip link add`, `ipset restore` for the sets'
creation and `ipset save` to read them back, `iptables-restore` for the constant rules).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dataplane.ipvs import netlink as nl
from dataplane.ipvs.plan import ADD, ADDRESS, DEL, ENTRY, RS, SET, VS, KernelView, Op
from dataplane.ipvs.render import (
    INTERFACE,
    SET_NAMES,
    SETS,
    RealServer,
    VirtualServer,
    VirtualServerConfig,
    set_name,
)

log = logging.getLogger("dataplane.ipvs")

BATCH = 256  # messages per sendmsg: their acknowledgements must fit the receive buffer
BUFFER = 4 << 20
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
TIMEOUT = 120.0
IPSET_HASHSIZE = 1024
IPSET_MAXELEM = 65536
SYSCTL = Path("/proc/sys")
# What IPVS mode needs of the kernel (kube-proxy's proxier.go): conntrack for IPVS connections (so iptables
# can masquerade them), connections to a deleted real server ended at their next packet, persistence
# templates of a weight-0 real server expired, and forwarding.
SYSCTLS = {
    "net/ipv4/vs/conntrack": "1",
    "net/ipv4/vs/expire_nodest_conn": "1",
    "net/ipv4/vs/expire_quiescent_template": "1",
    "net/ipv4/ip_forward": "1",
}
# strictARP (MetalLB's requirement for kube-proxy in IPVS mode): answer ARP only for addresses of the
# interface asked on, and announce with the best local source, so no node answers for the Service IPs that
# every node holds on kube-ipvs0; only the speaker answers for a LoadBalancer IP, on the node it elected.
STRICT_ARP = {"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2"}


SERVICE_COMMANDS = {ADD: nl.IPVS_CMD_NEW_SERVICE, SET: nl.IPVS_CMD_SET_SERVICE, DEL: nl.IPVS_CMD_DEL_SERVICE}
DEST_COMMANDS = {ADD: nl.IPVS_CMD_NEW_DEST, SET: nl.IPVS_CMD_SET_DEST, DEL: nl.IPVS_CMD_DEL_DEST}


class IpvsError(RuntimeError):
    pass


class IpvsUnavailable(IpvsError):
    """This kernel cannot run IPVS mode; the message names what is missing."""


def _run(argv: Sequence[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), input=text, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IpvsError(f"{argv[0]}: {exc}") from exc


class NetlinkSocket:
    """One netlink socket; requests go out in batches and every acknowledgement is read back."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, BUFFER)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER)
        except OSError:  # without CAP_NET_ADMIN: the plain limits
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        self.sock.bind((0, 0))
        self.sock.settimeout(TIMEOUT)
        self.seq = 1

    def close(self) -> None:
        self.sock.close()

    def transact(self, requests: Sequence[nl.Request]) -> list[int]:
        """Send every request; the errno of each (0: done)."""
        errors = [0] * len(requests)
        for start in range(0, len(requests), BATCH):
            chunk = requests[start : start + BATCH]
            first = self.seq
            self.seq += len(chunk)
            self.sock.sendall(b"".join(request.encode(first + i) for i, request in enumerate(chunk)))
            waiting = len(chunk)
            while waiting:
                for message in nl.parse_messages(self.sock.recv(BUFFER)):
                    index = message.seq - first
                    if message.type == nl.NLMSG_ERROR and 0 <= index < len(chunk):
                        errors[start + index] = nl.error_code(message)
                        waiting -= 1
        return errors

    def dump(self, request: nl.Request) -> list[nl.Message]:
        seq = self.seq
        self.seq += 1
        self.sock.sendall(request.encode(seq))
        found: list[nl.Message] = []
        while True:
            for message in nl.parse_messages(self.sock.recv(BUFFER)):
                if message.seq != seq:
                    continue
                if message.type == nl.NLMSG_DONE:
                    return found
                if message.type == nl.NLMSG_ERROR:
                    code = nl.error_code(message)
                    if code:
                        raise OSError(code, f"netlink dump: {errno.errorcode.get(code, code)}")
                    return found
                found.append(message)


def describe(code: int) -> str:
    if code >= 4096:
        return f"ipset error {code}"
    return errno.errorcode.get(code, str(code))


class Kernel:
    """IPVS, ipsets and kube-ipvs0 of this network namespace."""

    def __init__(self) -> None:
        self.generic = NetlinkSocket(nl.NETLINK_GENERIC)
        self.route = NetlinkSocket(nl.NETLINK_ROUTE)
        self.netfilter = NetlinkSocket(nl.NETLINK_NETFILTER)
        self.family_id = ipvs_family(self.generic)
        self._index: int | None = None

    def close(self) -> None:
        for sock in (self.generic, self.route, self.netfilter):
            sock.close()

    # ---- setup -----------------------------------------------------------------------------------------

    def set_sysctls(self, values: Mapping[str, str]) -> dict[str, str]:
        """Write sysctls of this netns; their earlier values (for the log)."""
        before = {}
        for key, value in values.items():
            path = SYSCTL / key
            try:
                before[key] = path.read_text().strip()
                if before[key] != value:
                    path.write_text(value)
            except OSError as exc:
                raise IpvsError(f"sysctl {key.replace('/', '.')}={value}: {exc}") from exc
        return before

    def ours(self, info: nl.AddressInfo) -> bool:
        """An address we bound on kube-ipvs0 (not the IPv6 link-local one the kernel gives it)."""
        return info.index == self._index and not ipaddress.ip_address(info.ip).is_link_local

    def ensure_interface(self) -> int:
        """kube-ipvs0 (a dummy, brought up so that IPv6 addresses on it are local too); its index."""
        try:
            index = socket.if_nametoindex(INTERFACE)
        except OSError:
            result = _run(["ip", "link", "add", INTERFACE, "type", "dummy"])
            if result.returncode != 0 and "File exists" not in result.stderr:
                raise IpvsError(f"ip link add {INTERFACE} type dummy: {result.stderr.strip()}") from None
            index = socket.if_nametoindex(INTERFACE)
            log.info("event=interface_created interface=%s", INTERFACE)
        result = _run(["ip", "link", "set", INTERFACE, "up"])
        if result.returncode != 0:
            raise IpvsError(f"ip link set {INTERFACE} up: {result.stderr.strip()}")
        self._index = index
        return index

    def interface_present(self) -> bool:
        try:
            return socket.if_nametoindex(INTERFACE) == self._index
        except OSError:
            return False

    def ensure_sets(self, families: Iterable[int]) -> None:
        """Create the ipsets that do not exist (one `ipset restore -exist`)."""
        lines = []
        for family in families:
            for spec in SETS:
                name = set_name(spec.name, family)
                if spec.kind.startswith("bitmap:"):
                    options = "range 0-65535"
                else:
                    options = (
                        f"family {'inet' if family == 4 else 'inet6'} hashsize {IPSET_HASHSIZE}"
                        f" maxelem {IPSET_MAXELEM}"
                    )
                lines.append(f"create {name} {spec.kind} {options} comment")
        result = _run(["ipset", "restore", "-exist"], "\n".join(lines) + "\n")
        if result.returncode != 0:
            raise IpvsError(f"ipset restore: {result.stderr.strip()}")

    # ---- reading (at start and after failures only) ------------------------------------------------------

    def read(self, families: Iterable[int]) -> KernelView:
        view = KernelView()
        for message in self.generic.dump(nl.dump_services(self.family_id)):
            parsed = nl.parse_service(message)
            if parsed is None:
                continue
            vs, config = parsed
            view.virtual_servers[vs] = config
            view.dests[vs] = {d.real: d.weight for d in self.dests(vs)}
        view.addresses = {a.ip for a in self.addresses() if self.ours(a)}
        names = {set_name(spec.name, family): spec.kind for family in families for spec in SETS}
        view.entries = read_sets(names)
        return view

    def dests(self, vs: VirtualServer) -> list[nl.DestState]:
        try:
            return [nl.parse_dest(m) for m in self.generic.dump(nl.dump_dests(self.family_id, vs))]
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return []
            raise

    def addresses(self) -> list[nl.AddressInfo]:
        found = []
        for message in self.route.dump(nl.dump_addresses()):
            info = nl.parse_address(message)
            if info is not None:
                found.append(info)
        return found

    # ---- writing ----------------------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> None:
        """Send the ops (batched, in their order); raise IpvsError naming what failed. An add of something
        that exists becomes a set, a delete of something gone is done."""
        if not ops:
            return
        requests = [self._request(op) for op in ops]
        retry: list[Op] = []
        failures: list[str] = []
        for kind in ("generic", "netfilter", "route"):
            indexes = [i for i, op in enumerate(ops) if _socket_of(op) == kind]
            if not indexes:
                continue
            sock: NetlinkSocket = getattr(self, kind)
            codes = sock.transact([requests[i] for i in indexes])
            for i, code in zip(indexes, codes, strict=True):
                op = ops[i]
                if code == 0 or _harmless(op, code):
                    continue
                if code == errno.EEXIST and op.action == ADD and op.target in (VS, RS):
                    retry.append(Op(SET, op.target, op.vs, op.config, op.real, op.weight))
                    continue
                failures.append(f"{op}: {describe(code)}")
        if retry:
            codes = self.generic.transact([self._request(op) for op in retry])
            failures += [f"{op}: {describe(code)}" for op, code in zip(retry, codes, strict=True) if code]
        if failures:
            more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
            raise IpvsError("; ".join(failures[:3]) + more)

    def _request(self, op: Op) -> nl.Request:
        if op.target == VS:
            assert op.vs is not None
            config = op.config if op.action != DEL else None
            return nl.service(self.family_id, SERVICE_COMMANDS[op.action], op.vs, config)
        if op.target == RS:
            assert op.vs is not None and op.real is not None
            return nl.dest(self.family_id, DEST_COMMANDS[op.action], op.vs, op.real, op.weight)
        if op.target == ENTRY:
            kind, family = SET_NAMES[op.set_name]
            command = nl.IPSET_CMD_ADD if op.action == ADD else nl.IPSET_CMD_DEL
            return nl.ipset_entry(command, op.set_name, kind, family, op.entry, op.comment)
        assert self._index is not None, "ensure_interface() first"
        command = nl.RTM_NEWADDR if op.action == ADD else nl.RTM_DELADDR
        return nl.address(command, self._index, op.address)

    def virtual_server_present(self, vs: VirtualServer) -> bool:
        """A dump of its real servers answers ESRCH when the virtual server is gone."""
        try:
            self.generic.dump(nl.dump_dests(self.family_id, vs))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return False
            raise
        return True

    def delete_virtual_servers(self, servers: Iterable[VirtualServer]) -> int:
        requests = [nl.service(self.family_id, nl.IPVS_CMD_DEL_SERVICE, vs) for vs in servers]
        codes = self.generic.transact(requests)
        return sum(1 for code in codes if code not in (0, errno.ESRCH, errno.ENOENT))

    def drain_states(
        self, pairs: Iterable[tuple[VirtualServer, RealServer]]
    ) -> list[tuple[VirtualServer, RealServer, int | None]]:
        """Connections (active + inactive) of each terminating real server; None when the kernel has none."""
        by_vs: dict[VirtualServer, list[RealServer]] = {}
        for vs, real in pairs:
            by_vs.setdefault(vs, []).append(real)
        found: list[tuple[VirtualServer, RealServer, int | None]] = []
        for vs, reals in by_vs.items():
            states = {d.real: d.active + d.inactive for d in self.dests(vs)}
            found += [(vs, real, states.get(real)) for real in reals]
        return found


def _socket_of(op: Op) -> str:
    if op.target in (VS, RS):
        return "generic"
    return "netfilter" if op.target == ENTRY else "route"


def _harmless(op: Op, code: int) -> bool:
    if op.action == DEL and code in (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
        return True
    return op.target == ADDRESS and op.action == ADD and code == errno.EEXIST


def ipvs_family(sock: NetlinkSocket) -> int:
    """The IPVS generic netlink family's id. Asking for it makes the kernel load ip_vs if it can; when it
    cannot, this kernel has no IPVS."""
    request = nl.get_family(nl.IPVS_GENL_NAME)
    seq = sock.seq
    sock.seq += 1
    sock.sock.sendall(request.encode(seq))
    while True:
        for message in nl.parse_messages(sock.sock.recv(BUFFER)):
            if message.seq != seq:
                continue
            if message.type == nl.NLMSG_ERROR:
                code = nl.error_code(message)
                if code == 0:
                    continue
                raise IpvsUnavailable(
                    "this kernel has no IPVS: kernel module ip_vs is not loaded and could not be loaded"
                    f" (generic netlink family IPVS: {describe(code)})"
                )
            return nl.parse_family_id(message)


def read_sets(names: Mapping[str, str]) -> dict[str, set[str]]:
    """The entries of our ipsets (`ipset save`), by set name; comments and options left out."""
    result = _run(["ipset", "save"])
    if result.returncode != 0:
        raise IpvsError(f"ipset save: {result.stderr.strip()}")
    return parse_ipset_save(result.stdout, names)


def parse_ipset_save(text: str, names: Mapping[str, str]) -> dict[str, set[str]]:
    entries: dict[str, set[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "add" and words[1] in names:
            entries.setdefault(words[1], set()).add(normalize_entry(names[words[1]], words[2]))
    return entries


def normalize_entry(kind: str, text: str) -> str:
    """ipset's printed form of an entry as render.py writes it (IPv6 compressed, port ranges aside)."""
    if kind == "bitmap:port":
        return text.split(":")[-1]
    parts = text.split(",")
    parts[0] = str(ipaddress.ip_address(parts[0]))
    if len(parts) > 2:
        parts[2] = (
            str(ipaddress.ip_network(parts[2], strict=False))
            if "/" in parts[2]
            else str(ipaddress.ip_address(parts[2]))
        )
    return ",".join(parts)


def check_scheduler(kernel: Kernel, scheduler: str) -> None:
    """Raise IpvsUnavailable when the scheduler's module is missing: a virtual server in the documentation
    range (kube-proxy's probe, 198.51.100.0:20000) is created with it and deleted again."""
    probe = VirtualServer(4, "TCP", "198.51.100.0", 20000)
    create = nl.service(kernel.family_id, nl.IPVS_CMD_NEW_SERVICE, probe, VirtualServerConfig(scheduler))
    codes = kernel.generic.transact([create])
    if codes[0] not in (0, errno.EEXIST):
        raise IpvsUnavailable(
            f"IPVS scheduler {scheduler}: kernel module ip_vs_{scheduler} is missing ({describe(codes[0])})"
        )
    kernel.generic.transact([nl.service(kernel.family_id, nl.IPVS_CMD_DEL_SERVICE, probe)])


def local_addresses() -> list[str]:
    """Every address on this netns's interfaces but loopback, IPv6 link-local and kube-ipvs0's (the daemon's
    NodeNetwork in IPVS mode: a netlink dump, no process)."""
    sock = NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        try:
            skip = socket.if_nametoindex(INTERFACE)
        except OSError:
            skip = -1
        found: list[str] = []
        for message in sock.dump(nl.dump_addresses()):
            info = nl.parse_address(message)
            if info is None or info.index == skip:
                continue
            ip = ipaddress.ip_address(info.ip)
            if ip.is_loopback or (ip.version == 6 and ip.is_link_local) or info.ip in found:
                continue
            found.append(info.ip)
        return found
    finally:
        sock.close()
