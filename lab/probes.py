"""The kubelet's httpGet probes, from the node's network namespace (where a real kubelet probes from), while
the lab kubelet itself runs in the host's.

A socket belongs to the network namespace of the thread that creates it, so the probe switches this thread
into the node's namespace (setns), creates the socket, and switches back at once; the connection then runs
like any other. Only the calling thread moves, and only for the socket() call.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def _in_netns(netns: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def connect(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _in_netns(netns):
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class HttpProbe:
    host: str
    port: int
    path: str
    timeout: float
    period: float
    initial_delay: float
    failure_threshold: int
    success_threshold: int


def http_probe(
    probe: Mapping[str, Any] | None, container: Mapping[str, Any], pod_ip: str
) -> HttpProbe | None:
    """The probe's httpGet target with named ports resolved; None for no probe (or a kind the lab skips)."""
    if not isinstance(probe, dict) or not isinstance(probe.get("httpGet"), dict):
        return None
    get = probe["httpGet"]
    port: Any = get.get("port")
    if isinstance(port, str) and not port.isdigit():
        named = [p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port]
        if not named:
            return None
        port = named[0]
    return HttpProbe(
        host=str(get.get("host") or pod_ip),
        port=int(port),
        path=str(get.get("path") or "/"),
        timeout=float(probe.get("timeoutSeconds") or 1),
        period=float(probe.get("periodSeconds") or 10),
        initial_delay=float(probe.get("initialDelaySeconds") or 0),
        failure_threshold=int(probe.get("failureThreshold") or 3),
        success_threshold=int(probe.get("successThreshold") or 1),
    )


def check(netns: str, probe: HttpProbe) -> bool:
    """One probe: any HTTP status from 200 to 399 succeeds, as the kubelet's."""
    try:
        with connect(netns, probe.host, probe.port, probe.timeout) as sock:
            host = f"[{probe.host}]" if ":" in probe.host else probe.host
            request = (
                f"GET {probe.path} HTTP/1.1\r\nHost: {host}:{probe.port}\r\nUser-Agent: kube-probe/1.36\r\n"
                "Accept: */*\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode())
            head = sock.recv(64).decode(errors="replace")
    except OSError:
        return False
    parts = head.split(" ", 2)
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
