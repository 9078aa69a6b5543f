"""Talking to nftables in the current network namespace (thin): writes through libnftables or `nft -f`, reads
through netlink.

Writes take nft's text and apply it as one transaction. Two transports (docs/benchmarks.md has the numbers):

- in-process libnftables (Debian's python3-nftables, a ctypes binding of libnftables1) for partial syncs:
  ~0.15 ms for a one-Service update, against ~16 ms for an `nft -f` child, which is mostly fork and exec;
  ctypes releases the GIL while the library works, so the daemon's other threads keep running;
- an `nft -f -` child for full syncs: nft holds ~45 bytes of its own per byte of input while it parses
  (270 MB for 10,000 Services × 10 endpoints); a child gives that back when it exits, where the daemon's
  heap would keep it.

Reads never go through nft: any `nft list` command (even `list tables`) makes nft 1.0 fetch every set element
of the ruleset first (8 s and 230 MB at 10,000 Services). The few reads (the names of our chains and sets
before a full sync, the canary) are nf_tables netlink dumps of tables, chains, sets or rules on a raw socket:
no elements, a few milliseconds.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from dataplane.nftables.ruleset import TABLE
from dataplane.nftables.transaction import KernelObjects

log = logging.getLogger("dataplane.nftables")

TIMEOUT = 600.0  # seconds: a full sync at 10,000 Services takes a few seconds on a busy node


class NftError(RuntimeError):
    pass


class Nft(Protocol):
    name: str

    def run(self, text: str) -> str:
        """Apply `text` as one transaction; its output. Raises NftError (the kernel then has none of it)."""
        ...

    def run_parts(self, parts: Sequence[bytes | bytearray]) -> None:
        """Apply the concatenation of `parts` as one transaction, without joining them first."""
        ...


def describe_failure(error: str, text: str) -> str:
    """nft's error, shortened: its first message, with the input line it names (from `text`, else the copy
    nft prints under the message)."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "failed"
    message = lines[0]
    match = re.match(r"[^:]*:(\d+):", message)
    source = text.splitlines()
    if match and 0 < int(match.group(1)) <= len(source):
        message += f" (line {match.group(1)}: {source[int(match.group(1)) - 1].strip()[:200]!r})"
    elif len(lines) > 1 and "Error:" not in lines[1]:
        message += f" ({lines[1].strip()[:200]!r})"
    return message[:1000]


class NftProcess:
    """`nft -f -` in a child process. `prefix` wraps the command (tests: `ip netns exec <netns>`)."""

    name = "nft"

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = list(prefix)

    def run(self, text: str) -> str:
        try:
            result = subprocess.run(
                [*self.prefix, "nft", "-f", "-"],
                input=text,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"nft: {exc}") from exc
        if result.returncode != 0:
            raise NftError(f"nft: {describe_failure(result.stderr, text)}")
        return result.stdout

    def run_parts(self, parts: Sequence[bytes | bytearray]) -> None:
        with tempfile.TemporaryFile() as errors:
            try:
                child = subprocess.Popen(
                    [*self.prefix, "nft", "-f", "-"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                )
            except OSError as exc:
                raise NftError(f"nft: {exc}") from exc
            assert child.stdin is not None
            try:
                for part in parts:
                    child.stdin.write(part)
                child.stdin.close()
                code = child.wait(TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                child.kill()
                child.wait()
                errors.seek(0)
                raise NftError(f"nft: {exc}: {errors.read().decode(errors='replace')[:1000]}") from exc
            if code != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace")
                raise NftError(f"nft: {describe_failure(message, '')}")


class LibNftables:
    """libnftables in this process, through Debian's python3-nftables binding."""

    name = "libnftables"

    def __init__(self) -> None:
        import nftables  # Debian's python3-nftables (scripts/install.sh links it into the venv)

        self._nft: Any = nftables.Nftables()
        self._lock = threading.Lock()  # one context: one command at a time

    def run(self, text: str) -> str:
        with self._lock:
            rc, output, error = self._nft.cmd(text)
        if rc != 0:
            raise NftError(f"libnftables: {describe_failure(error, text)}")
        return str(output)

    def run_parts(self, parts: Sequence[bytes | bytearray]) -> None:
        self.run(b"".join(parts).decode())


def open_nft(prefer: str = "libnftables", prefix: Sequence[str] = ()) -> Nft:
    """The transport to use: libnftables when it can be loaded (and no command prefix is asked for)."""
    if prefer == "libnftables" and not prefix:
        try:
            return LibNftables()
        except (ImportError, OSError) as exc:
            log.warning("event=libnftables_unavailable error=%r: using the nft command", str(exc))
    return NftProcess(prefix)


FAMILY_NUMBERS = {"ip": 2, "ip6": 10}  # NFPROTO_IPV4, NFPROTO_IPV6

# Netlink and nf_tables constants (linux/netlink.h, linux/netfilter/nfnetlink.h, nf_tables.h).
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET = 1, 4, 7, 10
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN = 1, 2
NFTA_SET_TABLE, NFTA_SET_NAME, NFTA_SET_FLAGS = 1, 2, 3
NFT_SET_ANONYMOUS, NFT_SET_MAP = 0x1, 0x8
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg


def _attribute(kind: int, text: str) -> bytes:
    value = text.encode() + b"\0"
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def parse_attributes(data: bytes) -> dict[int, bytes]:
    """A netlink message's top-level attributes by type (the nested and byte-order flags masked off)."""
    found = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _text(value: bytes | None) -> str:
    return (value or b"").split(b"\0", 1)[0].decode()


class Netlink:
    """Read-only nf_tables netlink dumps of our table's objects (never set elements), on a raw socket: the
    few reads the backend makes do not warrant pyroute2's cost (~9 MB of this process)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._number = FAMILY_NUMBERS[family]
        self._sequence = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        pass  # one socket per dump

    def _dump(self, message: int, filters: Sequence[tuple[int, str]] = ()) -> list[dict[int, bytes]]:
        with self._lock:
            self._sequence += 1
            payload = _NFGEN.pack(self._number, 0, 0) + b"".join(_attribute(k, v) for k, v in filters)
            request = _HEADER.pack(
                _HEADER.size + len(payload),
                (NFNL_SUBSYS_NFTABLES << 8) | message,
                NLM_F_REQUEST | NLM_F_DUMP,
                self._sequence,
                0,
            )
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
                    sock.settimeout(10.0)
                    sock.bind((0, 0))
                    sock.send(request + payload)
                    return self._receive(sock)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return []
                raise NftError(f"netlink dump {message}: {exc}") from exc

    def _receive(self, sock: socket.socket) -> list[dict[int, bytes]]:
        found: list[dict[int, bytes]] = []
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, sequence, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NftError("netlink: malformed message")
                if sequence == self._sequence:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                        if code:
                            raise OSError(-code, os.strerror(-code))
                        return found
                    body = data[offset + _HEADER.size + _NFGEN.size : offset + length]
                    found.append(parse_attributes(body))
                offset += (length + 3) & ~3

    def has_table(self) -> bool:
        return any(_text(m.get(NFTA_TABLE_NAME)) == TABLE for m in self._dump(NFT_MSG_GETTABLE))

    def objects(self) -> KernelObjects | None:
        """The names of the chains, sets and maps in our table, or None when it is absent."""
        if not self.has_table():
            return None
        chains = {
            _text(m.get(NFTA_CHAIN_NAME))
            for m in self._dump(NFT_MSG_GETCHAIN, [(NFTA_CHAIN_TABLE, TABLE)])
            if _text(m.get(NFTA_CHAIN_TABLE)) == TABLE
        }
        sets: set[str] = set()
        maps: set[str] = set()
        for m in self._dump(NFT_MSG_GETSET, [(NFTA_SET_TABLE, TABLE)]):
            flags = int.from_bytes(m.get(NFTA_SET_FLAGS, b"\0\0\0\0")[:4], "big")
            if flags & NFT_SET_ANONYMOUS:
                continue  # a rule's inline set: goes with its rule
            (maps if flags & NFT_SET_MAP else sets).add(_text(m.get(NFTA_SET_NAME)))
        return KernelObjects(frozenset(chains), frozenset(sets), frozenset(maps))

    def rules(self, chain: str) -> int:
        """How many rules one chain of our table holds (0 when the chain or the table is gone)."""
        return len(self._dump(NFT_MSG_GETRULE, [(NFTA_RULE_TABLE, TABLE), (NFTA_RULE_CHAIN, chain)]))
