"""A traffic probe the dataplane tests run inside a network namespace (`ip netns exec NS python -m
tests.dataplane.probe ...`), so one process makes many connections and prints one JSON line per attempt.

    tcp HOST PORT [--count N] [--timeout S] [--interval S]   line protocol: the echo server's answer
    http HOST PORT [--path P]                                  an HTTP GET (healthCheckNodePort, /healthz)
    udp HOST PORT [--count N] [--sport P] [--interval S]      one datagram each, from one source port
    hold HOST PORT                                             one TCP connection; a line on stdin -> a reply
    sctp-send HOST PORT [--sport P]                            one SCTP INIT through a raw socket (IPv4)
    sctp-listen PORT [--timeout S]                             the first SCTP packet to PORT: where it went

SCTP goes through raw sockets, so it is tested where the kernel has no SCTP stack too: the dataplane only
needs the kernel to track and NAT it.

Each result: {"ok": bool, "reply": "<pod> <client ip>:<port>" or "", "error": "ECONNREFUSED"|"timeout"|...,
"seconds": elapsed}.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import struct
import sys
import time
import urllib.request
from typing import Any


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _error(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def tcp_once(host: str, port: int, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.sendall(b"hello\n")
            reply = sock.makefile("rb").readline().decode().strip()
        return {
            "ok": bool(reply),
            "reply": reply,
            "error": "" if reply else "empty",
            "seconds": _since(started),
        }
    except Exception as exc:
        return {"ok": False, "reply": "", "error": _error(exc), "seconds": _since(started)}


def http_once(host: str, port: int, path: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    url = f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return {
                "ok": True,
                "status": response.status,
                "reply": response.read().decode(),
                "seconds": _since(started),
            }
    except urllib.error.HTTPError as exc:
        return {"ok": True, "status": exc.code, "reply": exc.read().decode(), "seconds": _since(started)}
    except Exception as exc:
        return {"ok": False, "status": 0, "reply": "", "error": _error(exc), "seconds": _since(started)}


def crc32c(data: bytes) -> int:
    """SCTP's checksum (Castagnoli CRC-32)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def sctp_init(sport: int, dport: int) -> bytes:
    """An SCTP packet (common header + INIT chunk) with its checksum, as a raw socket sends it."""
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1234567, 65535, 1, 1, 1)
    packet = struct.pack("!HHII", sport, dport, 0, 0) + chunk
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def sctp_listen(port: int, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP) as sock:
        sock.settimeout(timeout)
        emit({"ok": True, "reply": "listening", "error": "", "seconds": 0.0})
        started = time.monotonic()
        while True:
            try:
                data = sock.recv(65535)
            except Exception as exc:
                return {"ok": False, "reply": "", "error": _error(exc), "seconds": _since(started)}
            header = (data[0] & 0x0F) * 4
            dport = struct.unpack("!H", data[header + 2 : header + 4])[0]
            if dport == port:
                source = socket.inet_ntoa(data[12:16])
                destination = socket.inet_ntoa(data[16:20])
                return {
                    "ok": True,
                    "reply": f"{destination}:{dport} from {source}",
                    "error": "",
                    "seconds": _since(started),
                }


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["tcp", "http", "udp", "hold", "sctp-send", "sctp-listen"])
    parser.add_argument("host")
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--sport", type=int, default=0)
    parser.add_argument("--path", default="/")
    args = parser.parse_args(argv)
    if args.kind == "sctp-listen":
        emit(sctp_listen(int(args.host), args.timeout))
        return 0
    if args.kind == "sctp-send":
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP) as sock:
            sock.sendto(sctp_init(args.sport or 40000, args.port), (args.host, 0))
        emit({"ok": True, "reply": "sent", "error": "", "seconds": 0.0})
        return 0
    if args.kind == "udp":
        with socket.socket(_family(args.host), socket.SOCK_DGRAM) as sock:
            sock.bind(("::" if ":" in args.host else "0.0.0.0", args.sport))
            sock.settimeout(args.timeout)
            for index in range(args.count):
                if index and args.interval:
                    time.sleep(args.interval)
                started = time.monotonic()
                try:
                    sock.sendto(b"hello\n", (args.host, args.port))
                    reply = sock.recv(2048).decode().strip()
                    emit({"ok": True, "reply": reply, "error": "", "seconds": _since(started)})
                except Exception as exc:
                    emit({"ok": False, "reply": "", "error": _error(exc), "seconds": _since(started)})
        return 0
    if args.kind == "hold":
        with socket.socket(_family(args.host), socket.SOCK_STREAM) as sock:
            sock.settimeout(args.timeout)
            sock.connect((args.host, args.port))
            replies = sock.makefile("rb")
            emit({"ok": True, "reply": "connected", "error": "", "seconds": 0.0})
            for _ in sys.stdin:
                started = time.monotonic()
                try:
                    sock.sendall(b"ping\n")
                    reply = replies.readline().decode().strip()
                    emit(
                        {
                            "ok": bool(reply),
                            "reply": reply,
                            "error": "" if reply else "closed",
                            "seconds": _since(started),
                        }
                    )
                except Exception as exc:
                    emit({"ok": False, "reply": "", "error": _error(exc), "seconds": _since(started)})
        return 0
    for index in range(args.count):
        if index and args.interval:
            time.sleep(args.interval)
        if args.kind == "tcp":
            emit(tcp_once(args.host, args.port, args.timeout))
        else:
            emit(http_once(args.host, args.port, args.path, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
