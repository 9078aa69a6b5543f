"""Answers ARP and NDP for the IPs this node announces, on the interfaces chosen for them, from one thread.

``update(announcements, interfaces)`` may be called from any thread: the packet thread picks the new state up
before it reads another packet, so an IP stops being answered at once when it is withdrawn. For every
(IP, interface) newly announced the thread sends an RFC 5227 probe, then the gratuitous announcement
(ARP request and reply, or an unsolicited NA with Override) at once and every 1.1 s for 5 s, as MetalLB does.
Another host answering or announcing an IP we announce is a conflict: it is counted and reported (a speaker's
own MACs, ours or a peer's in the middle of a handover, are not).

The IPs are never added to an interface: the kernel must not answer for them by itself.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.pools import IPAddress
from speaker.desired import Announcement
from speaker.interfaces import Interface
from speaker.metrics import Metrics
from speaker.packets import (
    ARP_HEADER,
    BROADCAST,
    ETH_ARP,
    ETH_IPV6,
    NEIGHBOR_ADVERTISEMENT,
    NEIGHBOR_SOLICITATION,
    ArpResponder,
    NdpResponder,
    arp_probe,
    gratuitous_arp,
    mac_bytes,
    mac_text,
    multicast_mac,
    ns_probe,
    parse_ndp,
    solicited_node,
    unsolicited_na,
)
from speaker.wire import Groups, PacketSocket

log = logging.getLogger("speaker.announcer")

GRATUITOUS_EVERY = 1.1
GRATUITOUS_FOR = 5.0
BATCH = 64  # frames read from one socket before looking at the others


@dataclass(frozen=True)
class Conflict:
    ip: IPAddress
    mac: str
    interface: str


@dataclass(slots=True)
class _Entry:
    """Everything the packet path needs for one IP on one interface, computed once."""

    ip: IPAddress
    responder: ArpResponder | NdpResponder
    solicited_mac: bytes = b""  # IPv6: the solicited-node group's MAC
    # Prometheus children, looked up at the first request (10,000 idle IPs need no counters of their own).
    requests: Any = None
    responses: Any = None


@dataclass(slots=True)
class _Link:
    name: str
    index: int
    mac: bytes
    link_local: str
    sock: PacketSocket
    arp: dict[bytes, _Entry] = field(default_factory=dict)
    ndp: dict[bytes, _Entry] = field(default_factory=dict)
    broken: bool = False


class Announcer:
    def __init__(
        self,
        metrics: Metrics,
        on_conflict: Callable[[Conflict], None] = lambda conflict: None,
        speaker_macs: Callable[[], frozenset[bytes]] = frozenset,
        open_socket: Callable[[str], PacketSocket] = PacketSocket,
    ) -> None:
        self.metrics = metrics
        self.on_conflict = on_conflict
        self.speaker_macs = speaker_macs
        self.open_socket = open_socket
        self._lock = threading.Lock()
        self._pending: tuple[dict[IPAddress, Announcement], dict[str, Interface]] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._links: dict[str, _Link] = {}
        self._by_fd: dict[int, _Link] = {}
        self._groups = Groups()
        self._garp: list[tuple[float, int, str, str, IPAddress]] = []  # (due, left, iface, seq, ip)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._own_macs: frozenset[bytes] = frozenset()
        self.announced: dict[tuple[str, IPAddress], float] = {}  # (interface, ip) -> since (monotonic)

    # --- the control side ------------------------------------------------------------------------------

    def update(
        self, announcements: Mapping[IPAddress, Announcement], interfaces: Sequence[Interface]
    ) -> None:
        with self._lock:
            self._pending = (dict(announcements), {i.name: i for i in interfaces})
        self._wake()

    def start(self) -> Announcer:
        self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering everything at once, and release the sockets."""
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for link in list(self._links.values()):
            self._close(link)
        self._groups.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    # --- the packet thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = -1
            if self._garp:
                timeout = max(0, int((self._garp[0][0] - time.monotonic()) * 1000) + 1)
            try:
                events = self._poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, event in events:
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                link = self._by_fd.get(fd)
                if link is None:
                    continue
                if event & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                    self._broken(link, "socket error")
                    continue
                self._drain(link)
            self._take_pending()
            self._send_due_gratuitous()

    def _take_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._reconcile(*pending)

    def _drain(self, link: _Link) -> None:
        for _ in range(BATCH):
            try:
                received = link.sock.receive()
            except OSError as exc:
                self._broken(link, str(exc))
                return
            if received is None:
                return
            frame, _ = received
            try:
                if frame[12:14] == ETH_ARP:
                    self._arp(link, frame)
                elif frame[12:14] == ETH_IPV6:
                    self._ndp(link, frame)
            except OSError as exc:
                self._broken(link, str(exc))
                return

    def _arp(self, link: _Link, frame: bytes) -> None:
        if len(frame) < 42 or frame[14:20] != ARP_HEADER:
            return
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if frame[20:22] == b"\x00\x01":
            entry = link.arp.get(tpa)
            if entry is not None:
                dst = frame[0:6]
                if (dst == BROADCAST or dst == link.mac) and sha not in self._own_macs:
                    self._count(entry)
                    link.sock.send(entry.responder.reply(sha, spa))
                    entry.responses.inc()
        claimed = link.arp.get(spa)
        if claimed is not None and sha not in self._own_macs:
            self._conflict(link, claimed.ip, sha)

    def _ndp(self, link: _Link, frame: bytes) -> None:
        packet = parse_ndp(frame)
        if packet is None:
            return
        entry = link.ndp.get(packet.target)
        if entry is None:
            return
        if packet.type == NEIGHBOR_SOLICITATION:
            sender = packet.link_address or packet.eth_src
            if sender in self._own_macs or packet.eth_src in self._own_macs:
                return
            if packet.eth_dst in (entry.solicited_mac, link.mac):
                self._count(entry)
                link.sock.send(entry.responder.reply(packet.eth_src, packet.src))
                entry.responses.inc()
        elif packet.type == NEIGHBOR_ADVERTISEMENT:
            claimer = packet.link_address or packet.eth_src
            if claimer not in self._own_macs:
                self._conflict(link, entry.ip, claimer)

    def _count(self, entry: _Entry) -> None:
        if entry.requests is None:
            text = str(entry.ip)
            entry.requests = self.metrics.requests_received.labels(text)
            entry.responses = self.metrics.responses_sent.labels(text)
        entry.requests.inc()

    def _conflict(self, link: _Link, ip: IPAddress, mac: bytes) -> None:
        if mac in self.speaker_macs():
            return  # a peer speaker (a handover in progress), not a conflict
        self.metrics.conflicts.labels(str(ip), link.name).inc()
        self.on_conflict(Conflict(ip, mac_text(mac), link.name))

    def _broken(self, link: _Link, why: str) -> None:
        if not link.broken:
            log.warning(
                "event=interface_error interface=%s error=%r action=stop_answering_there", link.name, why
            )
        link.broken = True
        self._close(link)

    def _close(self, link: _Link) -> None:
        self._links.pop(link.name, None)
        fd = self._by_fd_of(link)
        if fd is not None:
            self._by_fd.pop(fd, None)
            try:
                self._poller.unregister(fd)
            except (KeyError, ValueError):
                pass
        self._groups.forget_interface(link.index)
        for key in [k for k in self.announced if k[0] == link.name]:
            del self.announced[key]
        link.sock.close()

    def _by_fd_of(self, link: _Link) -> int | None:
        for fd, known in self._by_fd.items():
            if known is link:
                return fd
        return None

    # --- reconciling the wanted state ----------------------------------------------------------------------

    def _reconcile(
        self, announcements: dict[IPAddress, Announcement], interfaces: dict[str, Interface]
    ) -> None:
        wanted: dict[str, list[Announcement]] = {}
        for announcement in announcements.values():
            for name in announcement.interfaces:
                wanted.setdefault(name, []).append(announcement)
        for name, link in list(self._links.items()):
            if name not in wanted or name not in interfaces or interfaces[name].index != link.index:
                for key in [k for k in self.announced if k[0] == name]:
                    self._withdrawn(key)
                self._close(link)
        for name, items in sorted(wanted.items()):
            interface = interfaces.get(name)
            if interface is None:
                log.warning(
                    "event=interface_missing interface=%s ips=%s", name, ",".join(str(a.ip) for a in items)
                )
                continue
            opened = self._links.get(name)
            if opened is None:
                try:
                    sock = self.open_socket(name)
                except OSError as exc:
                    log.warning("event=interface_error interface=%s error=%r", name, str(exc))
                    continue
                opened = _Link(name, interface.index, mac_bytes(interface.mac), interface.link_local, sock)
                self._links[name] = opened
                self._by_fd[sock.fileno()] = opened
                self._poller.register(sock.fileno(), select.POLLIN)
                log.info("event=interface_open interface=%s mac=%s", name, interface.mac)
            self._reconcile_link(opened, interface, items)
        self._own_macs = frozenset(known.mac for known in self._links.values()) | frozenset(
            mac_bytes(i.mac) for i in interfaces.values() if i.mac
        )

    def _reconcile_link(self, link: _Link, interface: Interface, items: list[Announcement]) -> None:
        arp: dict[bytes, _Entry] = {}
        ndp: dict[bytes, _Entry] = {}
        for announcement in items:
            ip = announcement.ip
            if isinstance(ip, ipaddress.IPv4Address):
                arp[ip.packed] = link.arp.get(ip.packed) or _Entry(ip, ArpResponder(link.mac, ip))
            elif interface.link_local:  # IPv6 is on there (the kernel lets us join the group)
                ndp[ip.packed] = link.ndp.get(ip.packed) or _Entry(
                    ip, NdpResponder(link.mac, ip), multicast_mac(solicited_node(ip))
                )
        added = [e.ip for k, e in {**arp, **ndp}.items() if k not in link.arp and k not in link.ndp]
        removed = [e.ip for k, e in {**link.arp, **link.ndp}.items() if k not in arp and k not in ndp]
        for ip in removed:
            if isinstance(ip, ipaddress.IPv6Address):
                self._groups.leave(link.index, ip)
            self._withdrawn((link.name, ip))
        for ip in added:
            if isinstance(ip, ipaddress.IPv6Address):
                try:
                    self._groups.join(link.index, ip)
                except OSError as exc:
                    log.warning(
                        "event=join_group_failed interface=%s ip=%s error=%r", link.name, ip, str(exc)
                    )
        if added or removed or not link.sock.exact:
            v4 = [ipaddress.IPv4Address(k) for k in arp]
            v6 = [ipaddress.IPv6Address(k) for k in ndp]
            try:
                link.sock.set_filter(v4, v6)
            except OSError as exc:
                self._broken(link, f"attaching the filter: {exc}")
                return
        # Swap whole dicts: the packet path (this thread) never sees a half-built table.
        link.arp, link.ndp = arp, ndp
        now = time.monotonic()
        for ip in added:
            self.announced[(link.name, ip)] = now
            self._takeover(link, ip, now)

    def _withdrawn(self, key: tuple[str, IPAddress]) -> None:
        if self.announced.pop(key, None) is not None:
            log.info("event=withdrawn interface=%s ip=%s", key[0], key[1])

    # --- announcing ----------------------------------------------------------------------------------------

    def _takeover(self, link: _Link, ip: IPAddress, now: float) -> None:
        """Probe first (RFC 5227: who else has it?), then announce at once and on a schedule."""
        try:
            if isinstance(ip, ipaddress.IPv4Address):
                link.sock.send(arp_probe(link.mac, ip))
            else:
                link.sock.send(ns_probe(link.mac, ip))
        except OSError as exc:
            self._broken(link, str(exc))
            return
        log.info("event=announcing interface=%s ip=%s mac=%s", link.name, ip, mac_text(link.mac))
        self._gratuitous(link, ip)
        rounds = int(GRATUITOUS_FOR / GRATUITOUS_EVERY)
        heapq.heappush(self._garp, (now + GRATUITOUS_EVERY, rounds, link.name, str(ip), ip))

    def _gratuitous(self, link: _Link, ip: IPAddress) -> None:
        try:
            if isinstance(ip, ipaddress.IPv4Address):
                for frame in gratuitous_arp(link.mac, ip):
                    link.sock.send(frame)
            else:
                link.sock.send(unsolicited_na(link.mac, ip))
        except OSError as exc:
            if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                self._broken(link, str(exc))
                return
            raise
        self.metrics.gratuitous_sent.labels(str(ip)).inc()

    def _send_due_gratuitous(self) -> None:
        now = time.monotonic()
        while self._garp and self._garp[0][0] <= now:
            _, left, name, _, ip = heapq.heappop(self._garp)
            link = self._links.get(name)
            if link is None or (name, ip) not in self.announced:
                continue  # withdrawn meanwhile: never announce an IP we gave up
            self._gratuitous(link, ip)
            if left > 1:
                heapq.heappush(self._garp, (now + GRATUITOUS_EVERY, left - 1, name, str(ip), ip))
