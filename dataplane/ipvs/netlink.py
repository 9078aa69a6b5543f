"""The netlink messages IPVS mode sends, as bytes (pure: struct only), and the parsing of the replies.

Three protocols: generic netlink for IPVS (linux/ip_vs.h), nfnetlink for ipset entries
(linux/netfilter/ipset/ip_set.h) and rtnetlink for the addresses on kube-ipvs0. A write is a `Request`
(type, flags, payload after the netlink header); the socket layer (kernel.py) numbers them and sends many in
one sendmsg. Why not pyroute2's IPVS class: measured in the user-mode-linux guest, one call costs 5.8 ms
(1.3 ms of it encoding the message through its generic NLA classes), where a batch of these messages costs
0.8 ms per message, all of it the kernel's (docs/benchmarks.md).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from dataplane.ipvs.render import PROTOCOLS, RealServer, VirtualServer, VirtualServerConfig

NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
NLA_HDR = struct.Struct("=HH")
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NETLINK_GENERIC = 16

# generic netlink control
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

# IPVS
IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1
IPVS_CMD_NEW_SERVICE = 1
IPVS_CMD_SET_SERVICE = 2
IPVS_CMD_DEL_SERVICE = 3
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_NEW_DEST = 5
IPVS_CMD_SET_DEST = 6
IPVS_CMD_DEL_DEST = 7
IPVS_CMD_GET_DEST = 8
IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT = 1, 2, 3, 4
SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = 6, 7, 8, 9
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT = 1, 2, 3, 4
DEST_U_THRESH, DEST_L_THRESH, DEST_ACTIVE_CONNS, DEST_INACT_CONNS = 5, 6, 7, 8
DEST_ADDR_FAMILY = 11
IP_VS_CONN_F_MASQ = 0  # NAT; pyroute2's default (3) is direct routing
IP_VS_CONN_F_FWD_MASK = 0x7

# ipset over nfnetlink
NFNL_SUBSYS_IPSET = 6
IPSET_PROTOCOL = 6  # the oldest protocol every kernel since 2.6.39 accepts
IPSET_CMD_ADD = 9
IPSET_CMD_DEL = 10
IPSET_ATTR_PROTOCOL = 1
IPSET_ATTR_SETNAME = 2
IPSET_ATTR_DATA = 7
IPSET_ATTR_IP = 1
IPSET_ATTR_PORT = 4
IPSET_ATTR_PROTO = 7
IPSET_ATTR_IP2 = 20
IPSET_ATTR_CIDR2 = 21
IPSET_ATTR_COMMENT = 26
IPSET_ATTR_IPADDR_IPV4 = 1
IPSET_ATTR_IPADDR_IPV6 = 2
IPSET_MAX_COMMENT = 255

# rtnetlink addresses
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_F_NODAD = 0x02
IFADDRMSG = struct.Struct("=BBBBI")


@dataclass(frozen=True, slots=True)
class Request:
    type: int
    flags: int
    payload: bytes

    def encode(self, seq: int) -> bytes:
        return (
            NLMSG_HDR.pack(NLMSG_HDR.size + len(self.payload), self.type, self.flags, seq, 0) + self.payload
        )


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    flags: int
    seq: int
    payload: bytes


def attr(kind: int, payload: bytes) -> bytes:
    length = NLA_HDR.size + len(payload)
    return NLA_HDR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def be16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!H", value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """Type (flags stripped) -> payload, for the attributes in data[offset:]."""
    found: dict[int, bytes] = {}
    view = memoryview(data)
    while offset + NLA_HDR.size <= len(view):
        length, kind = NLA_HDR.unpack_from(view, offset)
        if length < NLA_HDR.size:
            break
        found[kind & NLA_TYPE_MASK] = bytes(view[offset + NLA_HDR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def parse_messages(data: bytes) -> Iterator[Message]:
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            break
        yield Message(kind, flags, seq, data[offset + NLMSG_HDR.size : offset + length])
        offset += (length + 3) & ~3


def error_code(message: Message) -> int:
    """The errno of an NLMSG_ERROR (0: an acknowledgement)."""
    (code,) = struct.unpack_from("=i", message.payload)
    return -int(code)


def _address(ip: str) -> tuple[int, bytes]:
    parsed = ipaddress.ip_address(ip)
    return (socket.AF_INET if parsed.version == 4 else socket.AF_INET6), parsed.packed


def _genl(family_id: int, command: int, flags: int, body: bytes, version: int = IPVS_GENL_VERSION) -> Request:
    return Request(family_id, NLM_F_REQUEST | flags, struct.pack("=BBH", command, version, 0) + body)


# ---- generic netlink: the IPVS family's id --------------------------------------------------------------


def get_family(name: str) -> Request:
    return _genl(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK, string(CTRL_ATTR_FAMILY_NAME, name), version=1)


def parse_family_id(message: Message) -> int:
    attrs = parse_attrs(message.payload, 4)
    (family_id,) = struct.unpack("=H", attrs[CTRL_ATTR_FAMILY_ID][:2])
    return int(family_id)


# ---- IPVS ----------------------------------------------------------------------------------------------


def _service_key(vs: VirtualServer) -> list[bytes]:
    af, packed = _address(vs.address)
    return [
        u16(SVC_AF, af),
        u16(SVC_PROTOCOL, PROTOCOLS[vs.protocol]),
        attr(SVC_ADDR, packed),
        be16(SVC_PORT, vs.port),
    ]


def _service(vs: VirtualServer, config: VirtualServerConfig | None) -> bytes:
    attrs = _service_key(vs)
    if config is not None:
        # The kernel reads the netmask as a big-endian word but checks an IPv6 one as a prefix length in host
        # order: 128 must arrive as the host's bytes of 128 (without any netmask an IPv6 service is EINVAL).
        netmask = struct.pack("=I", 128) if vs.family == 6 else b"\xff\xff\xff\xff"
        attrs += [
            string(SVC_SCHED_NAME, config.scheduler),
            attr(SVC_FLAGS, struct.pack("=II", config.flags, 0xFFFFFFFF)),
            u32(SVC_TIMEOUT, config.timeout),
            attr(SVC_NETMASK, netmask),
        ]
    return nested(IPVS_CMD_ATTR_SERVICE, *attrs)


def service(
    family_id: int, command: int, vs: VirtualServer, config: VirtualServerConfig | None = None
) -> Request:
    """NEW/SET (with `config`) or DEL of a virtual server."""
    return _genl(family_id, command, NLM_F_ACK, _service(vs, config))


def dest(family_id: int, command: int, vs: VirtualServer, real: RealServer, weight: int = 1) -> Request:
    """NEW/SET/DEL of a real server, in NAT mode (fwd_method 0)."""
    af, packed = _address(real.ip)
    attrs = [attr(DEST_ADDR, packed), be16(DEST_PORT, real.port)]
    if command != IPVS_CMD_DEL_DEST:
        attrs += [
            u32(DEST_FWD_METHOD, IP_VS_CONN_F_MASQ),
            u32(DEST_WEIGHT, weight),
            u32(DEST_U_THRESH, 0),
            u32(DEST_L_THRESH, 0),
        ]
    attrs.append(u16(DEST_ADDR_FAMILY, af))
    return _genl(family_id, command, NLM_F_ACK, _service(vs, None) + nested(IPVS_CMD_ATTR_DEST, *attrs))


def dump_services(family_id: int) -> Request:
    return _genl(family_id, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, b"")


def dump_dests(family_id: int, vs: VirtualServer) -> Request:
    return _genl(family_id, IPVS_CMD_GET_DEST, NLM_F_DUMP, _service(vs, None))


def _ip(family: int, packed: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(packed[:4]))
    return str(ipaddress.IPv6Address(packed[:16]))


PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}


def parse_service(message: Message) -> tuple[VirtualServer, VirtualServerConfig] | None:
    """A dumped virtual server; None for one that is not protocol/address/port (a firewall-mark service)."""
    outer = parse_attrs(message.payload, 4)
    attrs = parse_attrs(outer.get(IPVS_CMD_ATTR_SERVICE, b""))
    if SVC_ADDR not in attrs or SVC_PROTOCOL not in attrs:
        return None
    (af,) = struct.unpack("=H", attrs[SVC_AF][:2])
    (protocol,) = struct.unpack("=H", attrs[SVC_PROTOCOL][:2])
    (port,) = struct.unpack("!H", attrs[SVC_PORT][:2])
    if protocol not in PROTOCOL_NAMES:
        return None
    vs = VirtualServer(
        4 if af == socket.AF_INET else 6, PROTOCOL_NAMES[protocol], _ip(af, attrs[SVC_ADDR]), port
    )
    flags, _ = struct.unpack("=II", attrs[SVC_FLAGS][:8]) if SVC_FLAGS in attrs else (0, 0)
    (timeout,) = struct.unpack("=I", attrs[SVC_TIMEOUT][:4]) if SVC_TIMEOUT in attrs else (0,)
    scheduler = attrs.get(SVC_SCHED_NAME, b"").rstrip(b"\0").decode()
    # The kernel reports its own bookkeeping flags (hashed); keep the ones we set.
    return vs, VirtualServerConfig(scheduler, timeout, flags & ~0x0002)


@dataclass(frozen=True, slots=True)
class DestState:
    real: RealServer
    weight: int
    forward: int  # IP_VS_CONN_F_* forwarding method (0: masquerade)
    active: int
    inactive: int


def parse_dest(message: Message) -> DestState:
    outer = parse_attrs(message.payload, 4)
    attrs = parse_attrs(outer.get(IPVS_CMD_ATTR_DEST, b""))
    (af,) = struct.unpack("=H", attrs[DEST_ADDR_FAMILY][:2]) if DEST_ADDR_FAMILY in attrs else (0,)
    packed = attrs[DEST_ADDR]
    if not af:
        af = socket.AF_INET6 if any(packed[4:16]) else socket.AF_INET
    (port,) = struct.unpack("!H", attrs[DEST_PORT][:2])

    def number(kind: int) -> int:
        return int(struct.unpack("=I", attrs[kind][:4])[0]) if kind in attrs else 0

    return DestState(
        RealServer(_ip(af, packed), port),
        number(DEST_WEIGHT),
        number(DEST_FWD_METHOD) & IP_VS_CONN_F_FWD_MASK,
        number(DEST_ACTIVE_CONNS),
        number(DEST_INACT_CONNS),
    )


# ---- ipset entries -------------------------------------------------------------------------------------


def _ipset_ip(kind: int, ip: str) -> bytes:
    parsed = ipaddress.ip_address(ip)
    inner = IPSET_ATTR_IPADDR_IPV4 if parsed.version == 4 else IPSET_ATTR_IPADDR_IPV6
    return nested(kind, attr(inner | NLA_F_NET_BYTEORDER, parsed.packed))


def _port_proto(text: str) -> list[bytes]:
    protocol, _, port = text.partition(":")
    return [
        attr(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, struct.pack("!H", int(port))),
        u8(IPSET_ATTR_PROTO, PROTOCOLS[protocol.upper()]),
    ]


def entry_data(kind: str, entry: str, comment: str = "") -> bytes:
    """The IPSET_ATTR_DATA of one entry in ipset's text form, for a set of type `kind`."""
    parts = entry.split(",")
    attrs: list[bytes]
    if kind == "bitmap:port":
        attrs = [attr(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, struct.pack("!H", int(parts[0])))]
    elif kind == "hash:ip":
        attrs = [_ipset_ip(IPSET_ATTR_IP, parts[0])]
    elif kind == "hash:ip,port":
        attrs = [_ipset_ip(IPSET_ATTR_IP, parts[0]), *_port_proto(parts[1])]
    elif kind == "hash:ip,port,ip":
        attrs = [
            _ipset_ip(IPSET_ATTR_IP, parts[0]),
            *_port_proto(parts[1]),
            _ipset_ip(IPSET_ATTR_IP2, parts[2]),
        ]
    elif kind == "hash:ip,port,net":
        network = ipaddress.ip_network(parts[2])
        attrs = [
            _ipset_ip(IPSET_ATTR_IP, parts[0]),
            *_port_proto(parts[1]),
            _ipset_ip(IPSET_ATTR_IP2, str(network.network_address)),
            u8(IPSET_ATTR_CIDR2, network.prefixlen),
        ]
    else:
        raise ValueError(f"ipset type {kind!r} is not one IPVS mode uses")
    if comment:
        attrs.append(string(IPSET_ATTR_COMMENT, comment.encode()[:IPSET_MAX_COMMENT].decode(errors="ignore")))
    return nested(IPSET_ATTR_DATA, *attrs)


def ipset_entry(
    command: int, set_name: str, kind: str, family: int, entry: str, comment: str = ""
) -> Request:
    """ADD or DEL of one entry. Without NLM_F_EXCL the kernel ignores adding what is there and deleting what
    is not (IPSET_FLAG_EXIST), so a repeated write is no error."""
    nfgen = struct.pack("=BBH", socket.AF_INET if family == 4 else socket.AF_INET6, 0, 0)
    body = (
        u8(IPSET_ATTR_PROTOCOL, IPSET_PROTOCOL)
        + string(IPSET_ATTR_SETNAME, set_name)
        + entry_data(kind, entry, comment if command == IPSET_CMD_ADD else "")
    )
    return Request((NFNL_SUBSYS_IPSET << 8) | command, NLM_F_REQUEST | NLM_F_ACK, nfgen + body)


# ---- addresses on kube-ipvs0 -----------------------------------------------------------------------------


def address(command: int, index: int, ip: str) -> Request:
    """RTM_NEWADDR / RTM_DELADDR of a host address (/32 or /128, no duplicate address detection)."""
    af, packed = _address(ip)
    header = IFADDRMSG.pack(af, len(packed) * 8, IFA_F_NODAD if af == socket.AF_INET6 else 0, 0, index)
    flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if command == RTM_NEWADDR else 0)
    return Request(
        command, NLM_F_REQUEST | flags, header + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    )


def dump_addresses() -> Request:
    return Request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))


@dataclass(frozen=True, slots=True)
class AddressInfo:
    index: int
    ip: str
    scope: int


def parse_address(message: Message) -> AddressInfo | None:
    af, _, _, scope, index = IFADDRMSG.unpack_from(message.payload)
    attrs = parse_attrs(message.payload, IFADDRMSG.size)
    packed = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if packed is None or af not in (socket.AF_INET, socket.AF_INET6):
        return None
    return AddressInfo(index, _ip(af, packed), scope)
