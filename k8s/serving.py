"""The one small HTTP server every daemon runs: /metrics, /healthz, /livez and /readyz.

Health endpoints answer as the kube-apiserver's do: 200 "ok" when every check passes, else 500 with one line
per check ("[+]name ok" / "[-]name failed: reason withheld"; the reason goes to the log); `?verbose` lists the
checks on success too, and /livez/<name> (or /readyz/<name>) runs one check. A check is a function returning
None when healthy or a reason when not (raising counts as failing). Liveness checks are also readiness checks;
readiness-only checks (caches synced, leader elected) decide /readyz alone. /healthz runs them all.

The server binds the address it is given; by default the pod's own IP (POD_IP) or 127.0.0.1, never every
interface.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger("k8s.serving")

Check = Callable[[], "str | None"]


def default_address() -> str:
    """Where a daemon listens unless told otherwise: the pod IP the downward API gives, else loopback."""
    return os.environ.get("POD_IP") or "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: Any) -> None:
        # socketserver prints a multi-line traceback to stderr; a probe that hangs up early is routine, and
        # anything else is still one structured line.
        error = sys.exc_info()[1]
        peer = client_address[0] if isinstance(client_address, tuple) and client_address else client_address
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("event=serving_client_gone peer=%s error=%s", peer, type(error).__name__)
        else:
            log.warning("event=serving_request_failed peer=%s error=%r", peer, error)


class _Server6(_Server):
    address_family = socket.AF_INET6


@dataclass(frozen=True)
class _Registered:
    name: str
    check: Check
    liveness: bool


class HealthServer:
    def __init__(
        self,
        address: str | None = None,
        port: int = 0,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.address = address or default_address()
        self.registry = registry
        self._checks: list[_Registered] = []
        self._lock = threading.Lock()
        server_class = _Server6 if ":" in self.address else _Server
        self._server: ThreadingHTTPServer = server_class((self.address, port), _handler_for(self))
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def add_check(self, name: str, check: Check, *, liveness: bool = False) -> None:
        """Register a readiness check, or with `liveness` one that /livez runs too (a restart would help)."""
        with self._lock:
            self._checks = [c for c in self._checks if c.name != name]
            self._checks.append(_Registered(name, check, liveness))

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()
        log.info("event=serving address=%s port=%d", self.address, self.port)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_checks(self, endpoint: str, only: str | None = None) -> tuple[bool, str]:
        """(healthy, body) of /livez, /readyz or /healthz, as the kube-apiserver writes it."""
        with self._lock:
            checks = [c for c in self._checks if c.liveness or endpoint != "livez"]
        if only is not None:
            checks = [c for c in checks if c.name == only]
        lines, healthy = [], True
        for registered in checks:
            try:
                reason = registered.check()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                lines.append(f"[+]{registered.name} ok")
            else:
                healthy = False
                lines.append(f"[-]{registered.name} failed: reason withheld")
                log.warning(
                    "event=check_failed endpoint=%s check=%s reason=%r", endpoint, registered.name, reason
                )
        lines.append(f"{endpoint} check {'passed' if healthy else 'failed'}")
        return healthy, "\n".join(lines) + "\n"

    def _known(self, name: str) -> bool:
        with self._lock:
            return any(c.name == name for c in self._checks)


def _handler_for(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if parts == ["metrics"]:
                self._answer(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                return
            if parts and parts[0] in ("healthz", "livez", "readyz") and len(parts) <= 2:
                only = parts[1] if len(parts) == 2 else None
                if only is not None and not server._known(only):
                    self._answer(404, b"404 page not found\n")
                    return
                healthy, body = server.run_checks(parts[0], only)
                if healthy and (only is not None or "verbose" not in query):
                    body = "ok"
                self._answer(200 if healthy else 500, body.encode())
                return
            self._answer(404, b"404 page not found\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # probes every few seconds would flood the log

    return Handler
