"""Classic BPF programs for the speaker's raw sockets: the kernel hands the process only the ARP and NDP
packets about the IPs it owns, so the rest of the traffic on the interface never reaches Python.

The program accepts, when the packet did not come from this host:
- ARP whose sender or target address is an owned IPv4 (requests to answer; announcements and replies from
  others for conflict detection);
- ICMPv6 Neighbor Solicitations and Advertisements (no extension headers) whose target is an owned IPv6.
A program holds at most ``MAX_INSTRUCTIONS``; past that a family falls back to a coarse filter (every ARP, or
every NS/NA) and the responder's dictionary lookup does the rest.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

# Opcodes (linux/filter.h, linux/bpf_common.h)
LD_W_ABS = 0x20
LD_H_ABS = 0x28
LD_B_ABS = 0x30
JMP_JA = 0x05
JMP_JEQ_K = 0x15
RET_K = 0x06
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4
ACCEPT = 0x40000  # bytes of the packet to keep: all of it
T = TypeVar("T")
MAX_INSTRUCTIONS = 4000  # the kernel's BPF_MAXINSNS is 4096
CHUNK = 100  # compares between two accept instructions: jump offsets are 8 bits


@dataclass(frozen=True, slots=True)
class Insn:
    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


class _Program:
    """Instructions with symbolic labels, resolved to relative jumps at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def add(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def resolve(self) -> list[Insn]:
        out = []
        for index, (code, jt, jf, k) in enumerate(self.code):
            if code == JMP_JA:
                target = self.labels[jt] if isinstance(jt, str) else index + 1 + jt
                out.append(Insn(code, 0, 0, target - index - 1))
                continue

            def offset(where: str | int, index: int = index) -> int:
                if isinstance(where, int):
                    return where
                distance = self.labels[where] - index - 1
                if not 0 <= distance <= 255:
                    raise ValueError(f"jump to {where} out of range ({distance})")
                return distance

            out.append(Insn(code, offset(jt), offset(jf), k))
        return out


def _in_chunks(
    program: _Program, items: Sequence[T], size: int, tag: str, emit: Callable[[T, str, str], None]
) -> None:
    """Emit a compare per item, ``size`` at a time, each chunk ending with its own accept instruction (a
    conditional jump reaches 255 instructions at most). ``emit(item, accept, name)`` writes one compare."""
    for start in range(0, len(items), size):
        accept = f"{tag}-accept-{start}"
        for number, item in enumerate(items[start : start + size]):
            emit(item, accept, f"{tag}-{start}-{number}")
        program.add(JMP_JA, jt=f"{tag}-next-{start}")
        program.label(accept)
        program.add(RET_K, ACCEPT)
        program.label(f"{tag}-next-{start}")


def _compare_words(program: _Program, offset: int, values: Sequence[int], tag: str) -> None:
    """Accept when the word at ``offset`` equals one of ``values``."""
    program.add(LD_W_ABS, offset)

    def compare(value: int, accept: str, _: str) -> None:
        program.add(JMP_JEQ_K, value, jt=accept)

    _in_chunks(program, values, CHUNK, tag, compare)


def _compare_v6(program: _Program, offset: int, ips: Sequence[ipaddress.IPv6Address], tag: str) -> None:
    """Accept when the 16 bytes at ``offset`` equal one of ``ips``: four word compares per address."""

    def compare(ip: ipaddress.IPv6Address, accept: str, name: str) -> None:
        miss = f"{name}-miss"
        for index, word in enumerate(struct.unpack("!4I", ip.packed)):
            program.add(LD_W_ABS, offset + 4 * index)
            program.add(JMP_JEQ_K, word, jt=accept if index == 3 else 0, jf=miss)
        program.label(miss)

    _in_chunks(program, ips, CHUNK // 8, tag, compare)


def program_for(
    v4: Iterable[ipaddress.IPv4Address], v6: Iterable[ipaddress.IPv6Address]
) -> tuple[list[Insn], bool]:
    """The filter for these owned IPs, and whether it is exact (False: a coarse family, see the module)."""
    v4_words = sorted({int(ip) for ip in v4})
    v6_ips = sorted(set(v6))
    exact_v4 = 2 * len(v4_words) * (1 + 1 / CHUNK) + 32 < MAX_INSTRUCTIONS / 2
    exact_v6 = len(v6_ips) * 9 + 32 < MAX_INSTRUCTIONS / 2
    p = _Program()
    # Conditional jumps reach 255 instructions at most: far targets go through an unconditional jump.
    p.add(LD_W_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE)
    p.add(JMP_JEQ_K, PACKET_OUTGOING, jt="drop-head")
    p.add(LD_H_ABS, 12)
    p.add(JMP_JEQ_K, 0x0806, jf=1)
    p.add(JMP_JA, jt="arp")
    p.add(JMP_JEQ_K, 0x86DD, jf="drop-head")
    p.add(JMP_JA, jt="ipv6")
    p.label("drop-head")
    p.add(RET_K, 0)
    p.label("arp")
    if not v4_words:
        p.add(JMP_JA, jt="drop")
    elif not exact_v4:
        p.add(RET_K, ACCEPT)
    else:
        _compare_words(p, 28, v4_words, "spa")  # sender protocol address
        _compare_words(p, 38, v4_words, "tpa")  # target protocol address
        p.add(JMP_JA, jt="drop")
    p.label("ipv6")
    p.add(LD_B_ABS, 20)  # next header
    p.add(JMP_JEQ_K, 58, jf="drop-ipv6")
    p.add(LD_B_ABS, 54)  # ICMPv6 type
    p.add(JMP_JEQ_K, 135, jt="nd")
    p.add(JMP_JEQ_K, 136, jt="nd", jf="drop-ipv6")
    p.label("drop-ipv6")
    p.add(RET_K, 0)
    p.label("nd")
    if not v6_ips:
        p.add(JMP_JA, jt="drop")
    elif not exact_v6:
        p.add(RET_K, ACCEPT)
    else:
        _compare_v6(p, 62, v6_ips, "target")
    p.label("drop")
    p.add(RET_K, 0)
    return p.resolve(), exact_v4 and exact_v6


def pack(program: Sequence[Insn]) -> bytes:
    """The ``struct sock_filter`` array for SO_ATTACH_FILTER."""
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in program)
