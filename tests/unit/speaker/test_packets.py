"""ARP/NDP frames and the BPF filter, checked against scapy's dissectors and a small cBPF interpreter."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from speaker import bpf
from speaker.packets import (
    ArpResponder,
    NdpResponder,
    arp_probe,
    gratuitous_arp,
    mac_bytes,
    mac_text,
    multicast_mac,
    ns_probe,
    parse_arp,
    parse_ndp,
    solicited_node,
    unsolicited_na,
)

OUR = "02:00:00:00:00:0b"
CLIENT = "02:00:00:00:00:c8"
VIP4 = ipaddress.IPv4Address("192.168.10.90")
VIP6 = ipaddress.IPv6Address("fd00:10::90")


def arp_request(
    target: str = str(VIP4), dst: str = "ff:ff:ff:ff:ff:ff", sender: str = "192.168.10.200"
) -> bytes:
    return bytes(Ether(src=CLIENT, dst=dst) / ARP(op=1, hwsrc=CLIENT, psrc=sender, pdst=target))


def ns(target: str = str(VIP6), src: str = "fd00:10::200", dad: bool = False) -> bytes:
    group = str(solicited_node(ipaddress.IPv6Address(target)))
    ip = IPv6(src="::" if dad else src, dst=group, hlim=255)
    packet = Ether(src=CLIENT, dst=mac_text(multicast_mac(ipaddress.IPv6Address(group)))) / ip
    packet /= ICMPv6ND_NS(tgt=target)
    if not dad:
        packet /= ICMPv6NDOptSrcLLAddr(lladdr=CLIENT)
    return bytes(packet)


def test_arp_reply_is_what_a_host_would_send() -> None:
    request = parse_arp(arp_request())
    assert request is not None and request.op == 1 and request.target_ip == VIP4.packed
    reply = Ether(ArpResponder(mac_bytes(OUR), VIP4).reply(request.sender_mac, request.sender_ip))
    assert reply.dst == CLIENT and reply.src == OUR and len(bytes(reply)) == 60
    arp = reply[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (2, OUR, str(VIP4), CLIENT, "192.168.10.200")


def test_gratuitous_pair_and_probe() -> None:
    request, reply = (Ether(f) for f in gratuitous_arp(mac_bytes(OUR), VIP4))
    assert request.dst == reply.dst == "ff:ff:ff:ff:ff:ff"
    assert (request[ARP].op, request[ARP].psrc, request[ARP].pdst, request[ARP].hwdst) == (
        1, str(VIP4), str(VIP4), "00:00:00:00:00:00",
    )  # fmt: skip
    assert (reply[ARP].op, reply[ARP].hwsrc, reply[ARP].psrc) == (2, OUR, str(VIP4))
    probe = Ether(arp_probe(mac_bytes(OUR), VIP4))[ARP]
    assert (probe.op, probe.psrc, probe.pdst, probe.hwsrc) == (1, "0.0.0.0", str(VIP4), OUR)


def test_parse_arp_refuses_other_frames() -> None:
    assert parse_arp(b"") is None
    assert parse_arp(ns()) is None
    assert parse_arp(bytes(Ether() / ARP(hwlen=8))) is None


def checksum_ok(frame: bytes) -> bool:
    packet = Ether(frame)
    layer = packet[ICMPv6ND_NA] if ICMPv6ND_NA in packet else packet[ICMPv6ND_NS]
    sent = layer.cksum
    del layer.cksum
    return bool(Ether(bytes(packet))[type(layer)].cksum == sent)


@pytest.mark.parametrize("source", ["fd00:10::200", "fe80::c8"])
def test_solicited_na_answers_the_solicitor(source: str) -> None:
    request = parse_ndp(ns(src=source))
    assert request is not None and request.type == 135 and request.target == VIP6.packed
    assert request.link_address == mac_bytes(CLIENT)
    frame = NdpResponder(mac_bytes(OUR), VIP6).reply(request.eth_src, request.src)
    packet = Ether(frame)
    assert (packet.dst, packet.src) == (CLIENT, OUR)
    assert (packet[IPv6].src, packet[IPv6].dst, packet[IPv6].hlim) == (str(VIP6), source, 255)
    na = packet[ICMPv6ND_NA]
    assert (na.tgt, na.S, na.O, na.R) == (str(VIP6), 1, 1, 0)
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == OUR
    assert checksum_ok(frame)


def test_duplicate_detection_solicitation_is_answered_to_all_nodes() -> None:
    request = parse_ndp(ns(dad=True))
    assert request is not None and request.link_address is None
    frame = NdpResponder(mac_bytes(OUR), VIP6).reply(request.eth_src, request.src)
    packet = Ether(frame)
    assert (packet.dst, packet[IPv6].dst, packet[ICMPv6ND_NA].S, packet[ICMPv6ND_NA].O) == (
        "33:33:00:00:00:01", "ff02::1", 0, 1,
    )  # fmt: skip
    assert checksum_ok(frame)


def test_unsolicited_na_and_probe() -> None:
    frame = unsolicited_na(mac_bytes(OUR), VIP6)
    packet = Ether(frame)
    assert (packet.dst, packet[IPv6].dst, packet[ICMPv6ND_NA].O, packet[ICMPv6ND_NA].S) == (
        "33:33:00:00:00:01", "ff02::1", 1, 0,
    )  # fmt: skip
    assert checksum_ok(frame)
    probe = ns_probe(mac_bytes(OUR), VIP6)
    packet = Ether(probe)
    assert (packet[IPv6].src, packet[IPv6].dst, packet.dst) == ("::", "ff02::1:ff00:90", "33:33:ff:00:00:90")
    assert ICMPv6NDOptSrcLLAddr not in packet and checksum_ok(probe)
    parsed = parse_ndp(frame)
    assert parsed is not None and parsed.type == 136 and parsed.link_address == mac_bytes(OUR)


def test_parse_ndp_refuses_what_rfc_4861_refuses() -> None:
    good = bytearray(ns())
    assert parse_ndp(bytes(good)) is not None
    hop = bytearray(good)
    hop[21] = 64  # hop limit must be 255: else it crossed a router
    assert parse_ndp(bytes(hop)) is None
    zero_option = bytearray(good)
    zero_option[79] = 0  # an option of length 0
    assert parse_ndp(bytes(zero_option)) is None
    assert parse_ndp(arp_request()) is None


@settings(max_examples=200)
@given(st.binary(max_size=120))
def test_parsers_never_raise(data: bytes) -> None:
    parse_arp(data)
    parse_ndp(data)


# --- the BPF filter, run by a small interpreter -------------------------------------------------------------


def run(program: list[bpf.Insn], packet: bytes, pkttype: int = 0) -> int:
    """Classic BPF (the subset we emit): the accepted length, 0 to drop."""
    pc, accumulator = 0, 0
    while True:
        insn = program[pc]
        if insn.code in (bpf.LD_W_ABS, bpf.LD_H_ABS, bpf.LD_B_ABS):
            k = insn.k - (1 << 32) if insn.k >= 1 << 31 else insn.k
            if k == bpf.SKF_AD_OFF + bpf.SKF_AD_PKTTYPE:
                accumulator = pkttype
            else:
                size = {bpf.LD_W_ABS: 4, bpf.LD_H_ABS: 2, bpf.LD_B_ABS: 1}[insn.code]
                if k + size > len(packet):
                    return 0  # out of bounds: the kernel drops
                accumulator = int.from_bytes(packet[k : k + size], "big")
            pc += 1
        elif insn.code == bpf.JMP_JEQ_K:
            pc += 1 + (insn.jt if accumulator == insn.k else insn.jf)
        elif insn.code == bpf.JMP_JA:
            pc += 1 + insn.k
        elif insn.code == bpf.RET_K:
            return insn.k
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")


def test_filter_accepts_only_owned_arp_and_ndp() -> None:
    program, exact = bpf.program_for([VIP4], [VIP6])
    assert exact
    assert run(program, arp_request())
    assert run(program, arp_request(target="192.168.10.91")) == 0
    assert run(program, arp_request(target="192.168.10.91", sender=str(VIP4)))  # someone else claims it
    assert run(program, arp_request(), pkttype=bpf.PACKET_OUTGOING) == 0  # our own announcements
    assert run(program, ns())
    assert run(program, bytes(Ether(unsolicited_na(mac_bytes(CLIENT), VIP6))))
    assert run(program, ns(target="fd00:10::91")) == 0
    assert run(program, bytes(Ether() / IPv6() / (b"x" * 80))) == 0
    nothing, _ = bpf.program_for([], [])
    assert run(nothing, arp_request()) == 0 and run(nothing, ns()) == 0


def test_filter_with_many_ips_chunks_its_jumps_and_falls_back_to_coarse() -> None:
    v4 = [ipaddress.IPv4Address("10.0.0.0") + i for i in range(900)]
    v6 = [ipaddress.IPv6Address("fd00::") + i for i in range(150)]
    program, exact = bpf.program_for(v4, v6)
    assert exact and len(program) < 4096
    assert len(bpf.pack(program)) == 8 * len(program)
    for ip in (v4[0], v4[450], v4[-1]):
        assert run(program, arp_request(target=str(ip)))
    for ip6 in (v6[0], v6[77], v6[-1]):
        assert run(program, ns(target=str(ip6)))
    assert run(program, arp_request(target="10.0.9.0")) == 0
    assert run(program, ns(target="fd00::1:0")) == 0
    huge = [ipaddress.IPv4Address("10.0.0.0") + i for i in range(5000)]
    program, exact = bpf.program_for(huge, v6)
    assert not exact and len(program) < 4096
    assert run(program, arp_request(target="172.16.0.1"))  # coarse: Python decides
    assert run(program, ns(target="fd00::1:0")) == 0  # the IPv6 part stays exact


def test_pack_layout() -> None:
    assert bpf.pack([bpf.Insn(bpf.RET_K, 1, 2, 0x40000)]) == struct.pack("=HBBI", 6, 1, 2, 0x40000)
