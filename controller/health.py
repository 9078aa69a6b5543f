"""`/healthz`, `/readyz` and `/metrics` on one port (--metrics-port), served from a thread of its own.

Liveness fails when one of the controller's long-running tasks ended (they never end on their own) or when
the event loop stopped beating (a handler stuck in a loop): the kubelet then restarts the container. The
thread answers even while the loop is stuck, which is why the loop's heartbeat is checked rather than the
server merely running.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("controller.health")

STALL_LIMIT = 30.0  # seconds without a heartbeat before the loop counts as stuck


class Health:
    """What the probes report. Written from the event loop, read from the server thread."""

    def __init__(self, stall_limit: float = STALL_LIMIT) -> None:
        self.failure: str | None = None
        self.ready = False
        self.stall_limit = stall_limit
        self._beat = time.monotonic()

    def beat(self) -> None:
        self._beat = time.monotonic()

    def fail(self, reason: str) -> None:
        """Record the first fatal problem; liveness fails from now on."""
        if self.failure is None:
            self.failure = reason

    def liveness_problem(self) -> str | None:
        if self.failure is not None:
            return self.failure
        silent = time.monotonic() - self._beat
        if silent > self.stall_limit:
            return f"the event loop has not run for {silent:.0f}s"
        return None

    def readiness_problem(self) -> str | None:
        problem = self.liveness_problem()
        if problem is None and not self.ready:
            problem = "starting"
        return problem


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/livez"):
            self._probe(self.server.health.liveness_problem())
        elif path == "/readyz":
            self._probe(self.server.health.readiness_problem())
        else:
            self._answer(404, b"not found\n", "text/plain")

    def _probe(self, problem: str | None) -> None:
        if problem is None:
            self._answer(200, b"ok\n", "text/plain")
        else:
            self._answer(503, f"{problem}\n".encode(), "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would drown the log


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, port: int, health: Health) -> None:
        self.health = health
        super().__init__((address, port), _Handler)


def serve(address: str, port: int, health: Health) -> HealthServer:
    """Start serving in a daemon thread; `shutdown()` the result to stop."""
    server = HealthServer(address, port, health)
    threading.Thread(target=server.serve_forever, name="health-server", daemon=True).start()
    log.info("event=serving address=%s port=%d paths=/metrics,/healthz,/readyz", address, server.server_port)
    return server
