"""The kernel side of layer 2: raw AF_PACKET sockets with a BPF filter, solicited-node group membership, and
what the node's interfaces are. Thin: the decisions live in speaker/announcer.py and the pure modules.

Needs CAP_NET_RAW (raw sockets). Joining a multicast group needs no capability.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
import struct
from typing import Any

from pyroute2 import IPRoute

from speaker.bpf import pack, program_for
from speaker.interfaces import Interface
from speaker.packets import solicited_node

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 4 << 20
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)
SCOPE_LINK = 253


def read_interfaces() -> list[Interface]:
    """This network namespace's interfaces, from netlink (sysfs may belong to another namespace)."""
    with IPRoute() as ipr:
        links: Any = ipr.get_links()
        addresses: Any = ipr.get_addr(family=socket.AF_INET6)
    link_local: dict[int, str] = {}
    for address in addresses:
        if address["scope"] == SCOPE_LINK and address["index"] not in link_local:
            link_local[address["index"]] = str(address.get_attr("IFA_ADDRESS"))
    found = []
    for link in links:
        flags = int(link["flags"])
        index = int(link["index"])
        found.append(
            Interface(
                name=str(link.get_attr("IFLA_IFNAME")),
                index=index,
                mac=str(link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"),
                up=bool(flags & IFF_UP) and link.get_attr("IFLA_OPERSTATE") != "DOWN",
                broadcast=bool(flags & IFF_BROADCAST) and not flags & IFF_LOOPBACK,
                noarp=bool(flags & IFF_NOARP),
                enslaved=link.get_attr("IFLA_MASTER") is not None,
                link_local=link_local.get(index, ""),
            )
        )
    return found


def _attach(sock: socket.socket, program: bytes) -> None:
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } with native alignment
    fprog = struct.pack("@HP", count, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class PacketSocket:
    """A raw socket on one interface that sees only what its BPF filter lets through.

    It is opened with protocol 0 (it receives nothing), gets its filter, and only then is bound to the
    interface for every protocol: no unfiltered packet is ever queued on it.
    """

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.exact = True
        try:
            self.set_filter([], [])
            self._grow_buffer()
            self.sock.bind((interface, ETH_P_ALL))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def _grow_buffer(self) -> None:
        """Room for a burst of requests while the process is not scheduled (a shared CPU, a GC pause): 4 MiB
        holds about 5,000 ARP requests, half a second at 10,000/s. Beyond net.core.rmem_max only with
        CAP_NET_ADMIN (SO_RCVBUFFORCE); else the kernel caps it at rmem_max."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def fileno(self) -> int:
        return self.sock.fileno()

    def set_filter(self, v4: list[ipaddress.IPv4Address], v6: list[ipaddress.IPv6Address]) -> None:
        program, self.exact = program_for(v4, v6)
        _attach(self.sock, pack(program))

    def receive(self) -> tuple[bytes, int] | None:
        """The next frame and its packet type, or None when nothing is queued."""
        try:
            frame, address = self.sock.recvfrom(2048)
        except BlockingIOError:
            return None
        return frame, address[2]

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()


class Groups:
    """Solicited-node multicast memberships (IPV6_JOIN_GROUP: the kernel programs the NIC's filter and sends
    MLD reports, so snooping switches forward the solicitations), reference-counted per (interface, group)."""

    def __init__(self) -> None:
        self._socks: list[socket.socket] = []
        self._joined: dict[tuple[int, ipaddress.IPv6Address], tuple[socket.socket, int]] = {}

    def _membership(self, group: ipaddress.IPv6Address, index: int) -> bytes:
        return group.packed + struct.pack("@I", index)

    def join(self, index: int, ip: ipaddress.IPv6Address) -> None:
        group = solicited_node(ip)
        key = (index, group)
        if key in self._joined:
            sock, count = self._joined[key]
            self._joined[key] = (sock, count + 1)
            return
        for sock in self._socks:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, self._membership(group, index))
            except OSError as exc:
                if exc.errno in (errno.ENOBUFS, errno.ENOMEM):
                    continue  # this socket holds as many groups as its option memory allows
                raise
            self._joined[key] = (sock, 1)
            return
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self._socks.append(sock)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, self._membership(group, index))
        self._joined[key] = (sock, 1)

    def leave(self, index: int, ip: ipaddress.IPv6Address) -> None:
        group = solicited_node(ip)
        key = (index, group)
        if key not in self._joined:
            return
        sock, count = self._joined[key]
        if count > 1:
            self._joined[key] = (sock, count - 1)
            return
        del self._joined[key]
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, self._membership(group, index))
        except OSError:
            pass  # the interface went away, and the membership with it

    def forget_interface(self, index: int) -> None:
        for key in [k for k in self._joined if k[0] == index]:
            del self._joined[key]

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks.clear()
        self._joined.clear()
