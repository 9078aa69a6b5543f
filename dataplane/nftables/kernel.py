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
before a full sync, the canary) are netlink dumps of chains, sets or rules through pyroute2: no elements, a
few milliseconds.
"""

from __future__ import annotations

import errno
import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink import nftsocket
from pyroute2.netlink.nfnetlink.nftsocket import NFTSocket

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


class Netlink:
    """Read-only netlink dumps of our table's objects (never set elements)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._socket = NFTSocket(nfgen_family=FAMILY_NUMBERS[family])
        self._lock = threading.Lock()

    def close(self) -> None:
        self._socket.close()

    def _dump(self, kind: str, attrs: list[tuple[str, str]]) -> list[Any]:
        message = getattr(nftsocket, f"nft_{kind}_msg")()
        message["attrs"] = attrs
        with self._lock:
            try:
                return list(
                    self._socket.request_get(message, getattr(nftsocket, f"NFT_MSG_GET{kind.upper()}"))
                )
            except NetlinkError as exc:
                if exc.code == errno.ENOENT:
                    return []
                raise NftError(f"netlink: {kind} dump: {exc}") from exc
            except OSError as exc:
                raise NftError(f"netlink: {kind} dump: {exc}") from exc

    def has_table(self) -> bool:
        return any(m.get_attr("NFTA_TABLE_NAME") == TABLE for m in self._dump("table", []))

    def objects(self) -> KernelObjects | None:
        """The names of the chains, sets and maps in our table, or None when it is absent."""
        if not self.has_table():
            return None
        chains = {
            str(m.get_attr("NFTA_CHAIN_NAME"))
            for m in self._dump("chain", [("NFTA_CHAIN_TABLE", TABLE)])
            if m.get_attr("NFTA_CHAIN_TABLE") == TABLE
        }
        sets: set[str] = set()
        maps: set[str] = set()
        for m in self._dump("set", [("NFTA_SET_TABLE", TABLE)]):
            name = str(m.get_attr("NFTA_SET_NAME"))
            flags = m.get_attr("NFTA_SET_FLAGS") or ()
            if "NFT_SET_ANONYMOUS" in flags or name.startswith("__"):
                continue  # a rule's inline set: goes with its rule
            (maps if "NFT_SET_MAP" in flags else sets).add(name)
        return KernelObjects(frozenset(chains), frozenset(sets), frozenset(maps))

    def rules(self, chain: str) -> int:
        """How many rules one chain of our table holds (0 when the chain or the table is gone)."""
        return len(self._dump("rule", [("NFTA_RULE_TABLE", TABLE), ("NFTA_RULE_CHAIN", chain)]))


def tables_present(family: str) -> bool:
    """Whether this namespace holds our table of `family` (a netlink dump of table names)."""
    reader = Netlink(family)
    try:
        return reader.has_table()
    finally:
        reader.close()
