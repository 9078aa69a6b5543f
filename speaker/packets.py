"""ARP and NDP frames as bytes: parsing what arrives, building what leaves. Pure; no sockets here.

The per-packet path is two dictionary lookups and a few byte concatenations: every reply is precomputed per
(interface, IP) but for the requester's addresses (``ArpResponder.reply``, ``NdpResponder.reply``).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_ARP = b"\x08\x06"
ETH_IPV6 = b"\x86\xdd"
ARP_HEADER = b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, 6-byte MACs, 4-byte addresses
ARP_REQUEST = 1
ARP_REPLY = 2
ICMPV6 = 58
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
UNSPECIFIED = ipaddress.IPv6Address("::")
MIN_FRAME = 60  # Ethernet minimum without the FCS: short frames are padded, as hosts do


def mac_bytes(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _pad(frame: bytes) -> bytes:
    return frame + b"\x00" * (MIN_FRAME - len(frame)) if len(frame) < MIN_FRAME else frame


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    return _fold(_sum16(data))


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _sum16(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return total


def solicited_node(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX, the group a Neighbor Solicitation for ``ip`` goes to."""
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip.packed[13:])


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    return b"\x33\x33" + group.packed[12:]


# --- ARP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arp:
    eth_dst: bytes
    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: bytes  # 4 bytes
    target_mac: bytes
    target_ip: bytes


def parse_arp(frame: bytes) -> Arp | None:
    """An Ethernet/IPv4 ARP packet, or None."""
    if len(frame) < 42 or frame[12:14] != ETH_ARP or frame[14:20] != ARP_HEADER:
        return None
    op = int.from_bytes(frame[20:22], "big")
    return Arp(frame[0:6], frame[6:12], op, frame[22:28], frame[28:32], frame[32:38], frame[38:42])


def arp_frame(
    eth_dst: bytes, src_mac: bytes, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes
) -> bytes:
    return _pad(eth_dst + src_mac + ETH_ARP + ARP_HEADER + op.to_bytes(2, "big") + sha + spa + tha + tpa)


class ArpResponder:
    """Replies for one (interface MAC, IPv4): only the requester's MAC and IP are filled in per request."""

    __slots__ = ("_middle",)

    def __init__(self, mac: bytes, ip: ipaddress.IPv4Address) -> None:
        # eth dst | eth src | type | header | op=reply | sha | spa || tha | tpa
        self._middle = mac + ETH_ARP + ARP_HEADER + b"\x00\x02" + mac + ip.packed

    def reply(self, requester_mac: bytes, requester_ip: bytes) -> bytes:
        return requester_mac + self._middle + requester_mac + requester_ip + b"\x00" * 18


def gratuitous_arp(mac: bytes, ip: ipaddress.IPv4Address) -> tuple[bytes, bytes]:
    """The announcement pair MetalLB sends on takeover: a broadcast request and a broadcast reply, both
    saying ``ip`` is at ``mac`` (neighbours with an entry update it; switches learn the port)."""
    request = arp_frame(BROADCAST, mac, ARP_REQUEST, mac, ip.packed, ZERO_MAC, ip.packed)
    reply = arp_frame(BROADCAST, mac, ARP_REPLY, mac, ip.packed, BROADCAST, ip.packed)
    return request, reply


def arp_probe(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """RFC 5227 probe: who has ``ip``? asked from 0.0.0.0, so nobody's cache changes."""
    return arp_frame(BROADCAST, mac, ARP_REQUEST, mac, b"\x00" * 4, ZERO_MAC, ip.packed)


# --- NDP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ndp:
    eth_dst: bytes
    eth_src: bytes
    src: bytes  # 16 bytes
    dst: bytes
    type: int  # NEIGHBOR_SOLICITATION or NEIGHBOR_ADVERTISEMENT
    flags: int  # the NA's R/S/O bits (the byte after the checksum)
    target: bytes
    link_address: bytes | None  # source (NS) or target (NA) link-layer address option


def parse_ndp(frame: bytes) -> Ndp | None:
    """A Neighbor Solicitation or Advertisement straight in IPv6 (no extension headers, hop limit 255, as
    RFC 4861 requires), or None. The ICMPv6 checksum is left to the kernel's receiver side: we only answer."""
    if len(frame) < 78 or frame[12:14] != ETH_IPV6 or frame[20] != ICMPV6 or frame[21] != 255:
        return None
    kind = frame[54]
    if kind not in (NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT) or frame[55] != 0:
        return None
    payload = int.from_bytes(frame[18:20], "big")
    end = min(len(frame), 54 + payload)
    link: bytes | None = None
    wanted = 1 if kind == NEIGHBOR_SOLICITATION else 2
    offset = 78
    while offset + 8 <= end:
        length = frame[offset + 1] * 8
        if length == 0:
            return None  # RFC 4861: an option of length 0 makes the packet invalid
        if frame[offset] == wanted and length >= 8:
            link = frame[offset + 2 : offset + 8]
        offset += length
    return Ndp(frame[0:6], frame[6:12], frame[22:38], frame[38:54], kind, frame[58], frame[62:78], link)


def _ipv6_icmp(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, body: bytes) -> bytes:
    """An Ethernet/IPv6 frame with hop limit 255 carrying ICMPv6 ``body`` (its checksum field zero)."""
    pseudo = src + dst + len(body).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([ICMPV6])
    value = checksum(pseudo + body)
    body = body[:2] + value.to_bytes(2, "big") + body[4:]
    header = b"\x60\x00\x00\x00" + len(body).to_bytes(2, "big") + bytes([ICMPV6, 255]) + src + dst
    return dst_mac + src_mac + ETH_IPV6 + header + body


NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20


def neighbor_advertisement(
    mac: bytes, source: ipaddress.IPv6Address, dst: bytes, dst_mac: bytes, target: bytes, flags: int
) -> bytes:
    body = bytes([NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0]) + target + b"\x02\x01" + mac
    return _ipv6_icmp(mac, dst_mac, source.packed, dst, body)


def unsolicited_na(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """To all nodes, Override set: neighbours replace the link-layer address they hold for ``ip``."""
    return neighbor_advertisement(mac, ip, ALL_NODES.packed, ALL_NODES_MAC, ip.packed, NA_OVERRIDE)


def ns_probe(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """A duplicate-address-detection solicitation for ``ip`` (from ::, no source link-layer option, as RFC
    4862 says): a host holding ``ip`` answers to all nodes."""
    group = solicited_node(ip)
    body = bytes([NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]) + ip.packed
    return _ipv6_icmp(mac, multicast_mac(group), UNSPECIFIED.packed, group.packed, body)


class NdpResponder:
    """Solicited advertisements for one (interface MAC, IPv6 target): the checksum's sum over everything but
    the destination is precomputed.

    The advertisement comes from the target address itself, as the kernel answers for its own addresses
    (tools such as ndisc6 accept nothing else); the IP is never configured on the interface for that.
    """

    __slots__ = ("_body_tail", "_head", "_partial")

    def __init__(self, mac: bytes, ip: ipaddress.IPv6Address) -> None:
        source = ip
        # Solicited and Override: the LB IP behaves as the node's own address (RFC 4861 7.2.4), so a
        # neighbour that still holds the previous owner's MAC replaces it.
        body = bytes([NEIGHBOR_ADVERTISEMENT, 0, 0, 0, NA_SOLICITED | NA_OVERRIDE, 0, 0, 0])
        body += ip.packed + b"\x02\x01" + mac
        pseudo_fixed = source.packed + len(body).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([ICMPV6])
        self._partial = _sum16(pseudo_fixed) + _sum16(body)
        self._head = (
            mac + ETH_IPV6 + b"\x60\x00\x00\x00" + len(body).to_bytes(2, "big") + bytes([ICMPV6, 255])
        )
        self._head += source.packed
        self._body_tail = body[4:]

    def reply(self, requester_mac: bytes, requester_ip: bytes) -> bytes:
        """To the soliciting address, or to all nodes when it solicited from :: (duplicate detection)."""
        if requester_ip == UNSPECIFIED.packed:
            requester_ip, requester_mac = ALL_NODES.packed, ALL_NODES_MAC
            # RFC 4861 7.2.4: to all nodes the Solicited flag must be clear.
            tail = bytes([NA_OVERRIDE]) + self._body_tail[1:]
            value = _fold(self._partial - (NA_SOLICITED << 8) + _sum16(requester_ip))
        else:
            tail = self._body_tail
            value = _fold(self._partial + _sum16(requester_ip))
        body = bytes([NEIGHBOR_ADVERTISEMENT, 0]) + value.to_bytes(2, "big") + tail
        return requester_mac + self._head + requester_ip + body
