"""A client-side ARP prober for the speaker benchmarks, run inside the lab client's namespace:

    ip netns exec <client netns> python -m bench.speaker_arp_probe watch IP [--interval 0.005]
    ip netns exec <client netns> python -m bench.speaker_arp_probe latency IP[,IP...] --count N
    ip netns exec <client netns> python -m bench.speaker_arp_probe flood IP --rate R --seconds S

- watch: a broadcast request for IP every interval; one JSON line per reply {"t": monotonic, "mac": ...}
  (CLOCK_MONOTONIC is the machine's, so the benchmark compares it with its own clock);
- latency: one request at a time, alternating between the IPs, the request-to-reply time of each (µs);
- flood: requests at a fixed rate for S seconds (open loop), then how many were answered.

Raw AF_PACKET on eth1; frames built with the speaker's own packet code (requests are plain ARP).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import sys
import time

from speaker.packets import ARP_REQUEST, BROADCAST, ZERO_MAC, arp_frame, mac_bytes, mac_text

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4


class Prober:
    def __init__(self, interface: str = "eth1") -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.bind((interface, ETH_P_ARP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setblocking(False)
        with open(f"/sys/class/net/{interface}/address") as address:
            self.mac = mac_bytes(address.read().strip())
        self.ip = ipaddress.IPv4Address(self._ipv4(interface)[0]).packed

    @staticmethod
    def _ipv4(interface: str) -> list[str]:
        import subprocess

        out = subprocess.run(["ip", "-j", "-4", "addr", "show", interface], capture_output=True, text=True)
        return [a["local"] for entry in json.loads(out.stdout) for a in entry.get("addr_info", [])]

    def request(self, target: bytes) -> bytes:
        return arp_frame(BROADCAST, self.mac, ARP_REQUEST, self.mac, self.ip, ZERO_MAC, target)

    def replies(self, timeout: float) -> list[tuple[float, bytes, bytes]]:
        """(time, sender IP, sender MAC) of the ARP replies to us that arrive within ``timeout``."""
        found: list[tuple[float, bytes, bytes]] = []
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return found
        while True:
            try:
                frame, address = self.sock.recvfrom(128)
            except BlockingIOError:
                return found
            now = time.monotonic()
            if address[2] == PACKET_OUTGOING or len(frame) < 42 or frame[20:22] != b"\x00\x02":
                continue
            if frame[32:38] == self.mac:
                found.append((now, frame[28:32], frame[22:28]))


def watch(prober: Prober, target: bytes, interval: float, duration: float) -> None:
    end = time.monotonic() + duration
    frame = prober.request(target)
    next_send = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            prober.sock.send(frame)
            next_send = now + interval
        for at, ip, mac in prober.replies(max(0.0, next_send - time.monotonic())):
            if ip == target:
                print(json.dumps({"t": at, "mac": mac_text(mac)}), flush=True)


def latency(prober: Prober, targets: list[bytes], count: int) -> dict[str, list[float]]:
    rtts: dict[str, list[float]] = {str(ipaddress.IPv4Address(t)): [] for t in targets}
    lost = dict.fromkeys(rtts, 0)
    for index in range(count * len(targets)):
        target = targets[index % len(targets)]
        key = str(ipaddress.IPv4Address(target))
        frame = prober.request(target)
        prober.replies(0)  # drain stragglers
        sent = time.monotonic()
        prober.sock.send(frame)
        got = None
        deadline = sent + 0.05
        while got is None and time.monotonic() < deadline:
            for at, ip, _ in prober.replies(deadline - time.monotonic()):
                if ip == target:
                    got = at
                    break
        if got is None:
            lost[key] += 1
        else:
            rtts[key].append((got - sent) * 1e6)
    return {**rtts, "lost": [float(lost[k]) for k in rtts]}


def flood(prober: Prober, target: bytes, rate: float, seconds: float) -> dict[str, float]:
    frame = prober.request(target)
    total = int(rate * seconds)
    sent = answered = 0
    start = time.monotonic()
    while sent < total:
        due = int((time.monotonic() - start) * rate) + 1
        while sent < min(due, total):
            prober.sock.send(frame)
            sent += 1
        for _, ip, _ in prober.replies(0.0005):
            answered += ip == target
    elapsed = time.monotonic() - start
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        for _, ip, _ in prober.replies(end - time.monotonic()):
            answered += ip == target
    return {"sent": sent, "answered": answered, "seconds": elapsed, "rate": sent / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["watch", "latency", "flood"])
    parser.add_argument("ips")
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--duration", type=float, default=3600)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10000)
    parser.add_argument("--seconds", type=float, default=2)
    args = parser.parse_args(argv)
    prober = Prober()
    targets = [ipaddress.IPv4Address(ip).packed for ip in args.ips.split(",")]
    if args.mode == "watch":
        watch(prober, targets[0], args.interval, args.duration)
    elif args.mode == "latency":
        print(json.dumps(latency(prober, targets, args.count)))
    else:
        print(json.dumps(flood(prober, targets[0], args.rate, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
