"""The pods' echo server, run as its real entry point on loopback (IPv4 and IPv6)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.echoserver import client_address, http_response, looks_like_http, reply_line

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET6, kind) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


class Echo:
    def __init__(self, proc: subprocess.Popen[bytes], tcp: list[int], udp: list[int]) -> None:
        self.proc, self.tcp, self.udp = proc, tcp, udp


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[Echo]:
    tcp = [free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)]
    udp = [free_port(socket.SOCK_DGRAM)]
    ready = tmp_path / "ready"
    cmd = [sys.executable, "-m", "lab.echoserver", "--name", "web-abc12", "--ready-file", str(ready)]
    for port in tcp:
        cmd += ["--tcp", str(port)]
    cmd += ["--udp", str(udp[0])]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None, "echo server exited before binding"
            assert time.monotonic() < deadline, "echo server never became ready"
            time.sleep(0.02)
        assert ready.read_text().strip() == str(proc.pid)
        yield Echo(proc, tcp, udp)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_http_over_ipv4_and_ipv6(echo: Echo) -> None:
    for host in ("127.0.0.1", "[::1]"):
        for port in echo.tcp:
            with urllib.request.urlopen(f"http://{host}:{port}/any/path", timeout=5) as resp:
                body = resp.read().decode()
                assert resp.status == 200
            name, addr = body.rstrip("\n").split(" ")
            assert name == "web-abc12"
            ip, _, client_port = addr.rpartition(":")
            assert ip == host.strip("[]")
            assert 0 < int(client_port) < 65536
            assert body.endswith("\n") and body.count("\n") == 1


def test_http_keep_alive_serves_several_requests(echo: Echo) -> None:
    with socket.create_connection(("127.0.0.1", echo.tcp[0]), timeout=5) as sock:
        local_port = sock.getsockname()[1]
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request + b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + request)
        data = b""
        expected = f"web-abc12 127.0.0.1:{local_port}\n".encode()
        while data.count(expected) < 3:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed early after {data!r}"
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 3


def test_tcp_line_mode_answers_each_line(echo: Echo) -> None:
    with socket.create_connection(("::1", echo.tcp[1]), timeout=5) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(b"hello\nworld\n")
        expected = f"web-abc12 ::1:{local_port}\n".encode()
        data = b""
        while len(data) < 2 * len(expected):
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
        assert data == expected * 2


def test_udp_datagrams(echo: Echo) -> None:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"ping", (host, echo.udp[0]))
            data, _ = sock.recvfrom(2048)
            assert data == f"web-abc12 {host}:{sock.getsockname()[1]}\n".encode()


def test_sigterm_stops_it(echo: Echo) -> None:
    echo.proc.send_signal(signal.SIGTERM)
    assert echo.proc.wait(5) == 0


def test_default_port_and_bad_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab.echoserver", "--name", "x", "--tcp", "70000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "port 70000 out of range" in result.stderr


def test_pure_helpers() -> None:
    assert client_address("::ffff:10.0.0.1", 5) == "10.0.0.1:5"
    assert client_address("fd00::1", 80) == "fd00::1:80"
    assert reply_line("p", "10.1.2.3", 4) == b"p 10.1.2.3:4\n"
    assert looks_like_http(b"GET / HTTP/1.1")
    assert not looks_like_http(b"GETX")
    response, keep = http_response(b"HEAD / HTTP/1.0", b"body\n")
    assert not keep and response.endswith(b"\r\n\r\n") and b"Content-Length: 5" in response
    response, keep = http_response(b"GET / HTTP/1.1\r\nConnection: close", b"b\n")
    assert not keep and response.endswith(b"b\n")
