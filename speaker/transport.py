"""The membership protocol's thread: one UDP socket, the codec, and the state machine driven by the clock.

Thin on purpose: every decision is in speaker/membership.py. Other threads read the machine's state through
the methods here (under one lock) and are told by ``on_change`` when the live set, isolation or reachability
changed.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from speaker.membership import STATUS_NAMES, Address, Membership, Send, Settings
from speaker.membership_codec import CodecError, decode, encode

log = logging.getLogger("speaker.membership")

DEFAULT_PORT = 7946


def _socket(bind: str, port: int) -> tuple[socket.socket, bool]:
    """A UDP socket; (socket, is IPv6). "::" means both families where the kernel has IPv6."""
    ip = ipaddress.ip_address(bind)
    if ip.version == 6:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            if ip.is_unspecified:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((bind, port))
            return sock, True
        except OSError as exc:
            if not ip.is_unspecified or exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            bind = "0.0.0.0"  # a kernel without IPv6
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, port))
    return sock, False


class MembershipLoop:
    def __init__(
        self,
        name: str,
        keys: Sequence[bytes],
        *,
        bind: str = "::",
        port: int = DEFAULT_PORT,
        settings: Settings | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if not keys:
            raise ValueError("the membership needs a secret key")
        self.name = name
        self.keys = list(keys)
        self.port = port
        self.on_change = on_change
        self.sock, self._v6 = _socket(bind, port)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        # The incarnation starts at the wall clock in ms: a restarted speaker always supersedes its old self.
        self._machine = Membership(name, int(time.time() * 1000), time.monotonic(), settings, random.Random())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: tuple[frozenset[str], bool, bool, bool] = (frozenset(), False, True, False)
        self.bad_datagrams = 0

    # --- read by other threads ---------------------------------------------------------------------------

    def alive(self) -> frozenset[str]:
        with self._lock:
            return self._machine.alive()

    def status(self) -> tuple[frozenset[str], bool, bool, bool]:
        """(alive, isolated, reachable, joined), consistent with each other."""
        with self._lock:
            machine = self._machine
            return machine.alive(), machine.isolated(time.monotonic()), machine.reachable(), machine.joined

    def set_universe(self, members: Mapping[str, str]) -> None:
        """Node name -> its address (the speakers' port is the same everywhere)."""
        universe = {name: (address, self.port) for name, address in members.items()}
        with self._lock:
            self._machine.set_universe(time.monotonic(), universe)
        self._changed()

    def set_stale(self, names: Iterable[str]) -> None:
        with self._lock:
            self._machine.set_stale(names)

    # --- life cycle --------------------------------------------------------------------------------------

    def start(self) -> MembershipLoop:
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)
        self._thread.start()
        return self

    def leave(self) -> None:
        """Say goodbye twice (a datagram may be lost), then stop."""
        for _ in range(2):
            with self._lock:
                sends = self._machine.leave(time.monotonic())
            self._send_all(sends)
            time.sleep(0.05)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self.sock.close()

    # --- the thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                deadline = self._machine.next_deadline()
            timeout = min(max(deadline - time.monotonic(), 0.001), 0.5)
            try:
                readable, _, _ = select.select([self.sock], [], [], timeout)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                raise
            sends: list[Send] = []
            now = time.monotonic()
            with self._lock:
                if readable:
                    sends += self._receive_all(now)
                if now >= self._machine.next_deadline():
                    sends += self._machine.tick(now)
                changes = self._machine.drain_changes()
                state = (
                    self._machine.alive(),
                    self._machine.isolated(now),
                    self._machine.reachable(),
                    self._machine.joined,
                )
            self._send_all(sends)
            for change in changes:
                log.info(
                    "event=%s member=%s status=%s incarnation=%d",
                    "member_up" if change.alive else "member_down",
                    change.name,
                    STATUS_NAMES[change.fact.status],
                    change.fact.incarnation,
                )
            if state != self._state:
                if state[1] != self._state[1]:
                    log.warning("event=isolation isolated=%s", str(state[1]).lower())
                if state[2] != self._state[2]:
                    log.warning("event=reachability reachable=%s", str(state[2]).lower())
                self._state = state
                self._changed()

    def _receive_all(self, now: float) -> list[Send]:
        sends: list[Send] = []
        for _ in range(256):
            try:
                data, source = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            try:
                message = decode(data, self.keys)
            except CodecError as exc:
                self.bad_datagrams += 1
                if self.bad_datagrams <= 10 or self.bad_datagrams % 1000 == 0:
                    log.warning(
                        "event=bad_datagram source=%s error=%s count=%d", source[0], exc, self.bad_datagrams
                    )
                continue
            address: Address = (str(source[0]), int(source[1]))
            sends += self._machine.receive(now, address, message)
        return sends

    def _send_all(self, sends: list[Send]) -> None:
        for send in sends:
            host, port = send.to
            if self._v6 and ":" not in host:
                host = f"::ffff:{host}"
            try:
                self.sock.sendto(encode(send.message, self.keys[0]), (host, port))
            except OSError as exc:
                # No route (our link is down) or a full buffer: the protocol copes with losses.
                log.debug("event=send_failed to=%s error=%r", host, str(exc))

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception:
            log.exception("event=on_change_failed")
