"""The lab pods' workload: a tiny HTTP, TCP-line and UDP-datagram echo server.

Every reply is one line `<pod-name> <client-ip>:<client-port>\\n` (the lab contract), so a test or a user
can see which pod answered and which source address it saw: did a load balancer keep the client IP?

    python -m lab.echoserver --name POD --tcp 80 [--tcp 8080] [--udp 53] [--bind ::] [--ready-file PATH]

TCP connections whose first bytes start with an HTTP method get HTTP/1.1 responses (keep-alive honoured);
anything else gets one reply line per received line. Sockets bind to `::` dual-stack by default, falling
back to 0.0.0.0 where IPv6 is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from lab.logsetup import configure_logging

log = logging.getLogger("lab.echoserver")

HTTP_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT = 300.0


def client_address(host: str, port: int) -> str:
    """`ip:port` as the contract prints it; IPv4 clients of a dual-stack socket show as plain IPv4."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"{host}:{port}"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return f"{addr}:{port}"


def reply_line(pod_name: str, host: str, port: int) -> bytes:
    return f"{pod_name} {client_address(host, port)}\n".encode()


def looks_like_http(first: bytes) -> bool:
    return any(first.startswith(method + b" ") for method in HTTP_METHODS)


def http_response(request_head: bytes, body: bytes) -> tuple[bytes, bool]:
    """The response to one HTTP request head, and whether the connection stays open after it."""
    lines = request_head.split(b"\r\n")
    request_line = lines[0].split(b" ")
    method = request_line[0]
    version = request_line[2] if len(request_line) > 2 else b"HTTP/1.0"
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    connection = headers.get(b"connection", b"")
    keep_alive = connection != b"close" if version == b"HTTP/1.1" else connection == b"keep-alive"
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        + b"Server: ironlb-echo\r\n\r\n"
    )
    return head + (b"" if method == b"HEAD" else body), keep_alive


def content_length(request_head: bytes) -> int:
    for line in request_head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return 0
    return 0


class EchoServer:
    def __init__(self, pod_name: str) -> None:
        self.pod_name = pod_name

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        line = reply_line(self.pod_name, str(peer[0]), int(peer[1]))
        try:
            first = await asyncio.wait_for(reader.read(8), IDLE_TIMEOUT)
            if not first:
                return
            if looks_like_http(first) or any(m.startswith(first) for m in HTTP_METHODS):
                await self._serve_http(first, reader, writer, line)
            else:
                await self._serve_lines(first, reader, writer, line)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_http(
        self, pending: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
    ) -> None:
        buffer = pending
        while True:
            while b"\r\n\r\n" not in buffer:
                if len(buffer) > MAX_HEADER_BYTES:
                    return
                chunk = await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            if not looks_like_http(head):
                return
            to_skip = content_length(head)
            while len(buffer) < to_skip:
                chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[to_skip:]
            response, keep_alive = http_response(head, body)
            writer.write(response)
            await writer.drain()
            if not keep_alive:
                return

    async def _serve_lines(
        self, pending: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
    ) -> None:
        buffer = pending
        while True:
            count = buffer.count(b"\n")
            if count:
                writer.write(line * count)
                await writer.drain()
                buffer = buffer[buffer.rfind(b"\n") + 1 :]
            chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            if not chunk:
                if buffer:
                    # A last line without newline still gets its answer (e.g. `printf x | nc`).
                    writer.write(line)
                    await writer.drain()
                return
            buffer += chunk


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, pod_name: str) -> None:
        self.pod_name = pod_name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(reply_line(self.pod_name, str(addr[0]), int(addr[1])), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("event=udp_error error=%r", exc)


def make_socket(bind: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A bound socket; `::` is dual-stack so one socket serves IPv4 and IPv6 clients."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if bind == "::" else 1)
        sock.bind((bind, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(512)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_sockets(binds: Sequence[str], port: int, kind: socket.SocketKind) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    for bind in binds:
        try:
            sockets.append(make_socket(bind, port, kind))
        except OSError as exc:
            if bind == "::" and exc.errno in (97, 99):  # EAFNOSUPPORT / EADDRNOTAVAIL: no IPv6 here
                sockets.append(make_socket("0.0.0.0", port, kind))
            else:
                raise
    return sockets


async def serve(
    name: str,
    tcp_ports: Sequence[int],
    udp_ports: Sequence[int],
    binds: Sequence[str],
    ready_file: Path | None,
) -> None:
    loop = asyncio.get_running_loop()
    echo = EchoServer(name)
    servers: list[asyncio.Server] = []
    transports: list[asyncio.DatagramTransport] = []
    for port in tcp_ports:
        for sock in bind_sockets(binds, port, socket.SOCK_STREAM):
            servers.append(await asyncio.start_server(echo.handle_tcp, sock=sock))
    for port in udp_ports:
        for sock in bind_sockets(binds, port, socket.SOCK_DGRAM):
            transport, _ = await loop.create_datagram_endpoint(lambda: UdpEcho(name), sock=sock)
            transports.append(transport)
    log.info(
        "event=listening name=%s tcp=%s udp=%s bind=%s", name, list(tcp_ports), list(udp_ports), list(binds)
    )
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(ready_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    for transport in transports:
        transport.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.echoserver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="pod name put in every reply")
    parser.add_argument("--tcp", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--udp", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--bind", action="append", default=[], metavar="ADDR", help="default :: (dual-stack)")
    parser.add_argument("--ready-file", type=Path, help="written once every socket is bound")
    parser.add_argument(
        "--pod-netns", default="", help="informational: the pod's netns, so lab cleanup can find this process"
    )
    args = parser.parse_args(argv)
    for port in [*args.tcp, *args.udp]:
        if not 1 <= port <= 65535:
            parser.error(f"port {port} out of range 1-65535")
    if not args.tcp and not args.udp:
        args.tcp = [80]
    if not args.bind:
        args.bind = ["::"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        asyncio.run(serve(args.name, args.tcp, args.udp, args.bind, args.ready_file))
    except OSError as exc:
        log.error("event=bind_failed name=%s error=%r", args.name, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
