"""healthCheckNodePort servers, answering like kube-proxy's (pkg/proxy/healthcheck/service_health.go).

A LoadBalancer Service with externalTrafficPolicy Local gets an HTTP server on its healthCheckNodePort on
every node: 200 when the node has a local ready endpoint (and the dataplane is healthy), else 503, so a load
balancer only sends to nodes that can answer without a second hop. The body names the Service and the count:

    {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 1, "serviceProxyHealthy": true}

The counts are pure (from the snapshot); the servers are thin (one listening socket per port).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dataplane.model import ServiceInfo, ServiceKey

log = logging.getLogger("dataplane.healthcheck")


@dataclass(frozen=True, slots=True)
class HealthCheck:
    service: ServiceKey
    port: int
    local_endpoints: int


def health_check(info: ServiceInfo) -> HealthCheck | None:
    """The Service's healthCheckNodePort and how many of its ready endpoints run on this node (distinct pod
    IPs, the larger count of the two families, so a dual-stack pod counts once); None without a port."""
    port = next((p.health_check_node_port for p in info.ports if p.health_check_node_port), 0)
    if not port:
        return None
    by_family: dict[int, set[str]] = {}
    for service_port, endpoints in info.port_endpoints():
        by_family.setdefault(service_port.family, set()).update(
            ep.ip for ep in endpoints if ep.local and ep.ready
        )
    return HealthCheck(info.key, port, max((len(ips) for ips in by_family.values()), default=0))


def response(check: HealthCheck, proxy_healthy: bool) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for one probe (kube-proxy's exact fields)."""
    body = {
        "service": {"namespace": check.service.namespace, "name": check.service.name},
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": proxy_healthy,
    }
    headers = {
        "Content-Type": "application/json",
        "X-Content-Type-Options": "nosniff",
        "X-Load-Balancing-Endpoint-Weight": str(check.local_endpoints),
    }
    status = 200 if check.local_endpoints > 0 and proxy_healthy else 503
    return status, headers, (json.dumps(body, indent=2) + "\n").encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # One dual-stack socket serves IPv4 and IPv6 probes on every address of the node.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class HealthCheckServers:
    """One listener per healthCheckNodePort in the snapshot; `update` after every successful sync."""

    def __init__(self, proxy_healthy: Callable[[], bool], address: str = "::") -> None:
        self.proxy_healthy = proxy_healthy
        self.address = address
        self._checks: dict[int, HealthCheck] = {}
        self._servers: dict[int, tuple[ThreadingHTTPServer, threading.Thread]] = {}
        self._lock = threading.Lock()

    def update(self, checks: Mapping[int, HealthCheck]) -> None:
        with self._lock:
            self._checks = dict(checks)
        for port in sorted(set(self._servers) - set(checks)):
            server, thread = self._servers.pop(port)
            server.shutdown()
            server.server_close()
            thread.join(5)
            log.info("event=health_check_closed port=%d", port)
        for port in sorted(set(checks) - set(self._servers)):
            try:
                server = _Server((self.address, port), self._handler(port))
            except OSError as exc:
                log.error(
                    "event=health_check_bind_failed port=%d service=%s error=%s",
                    port,
                    checks[port].service,
                    exc,
                )
                continue
            thread = threading.Thread(target=server.serve_forever, name=f"healthcheck {port}", daemon=True)
            thread.start()
            self._servers[port] = (server, thread)
            log.info("event=health_check_listening port=%d service=%s", port, checks[port].service)

    def stop(self) -> None:
        self.update({})

    def _current(self, port: int) -> HealthCheck | None:
        with self._lock:
            return self._checks.get(port)

    def _handler(self, port: int) -> type[BaseHTTPRequestHandler]:
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = servers._current(port)
                if check is None:
                    self.send_error(503)
                    return
                status, headers, body = response(check, servers.proxy_healthy())
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # load balancers probe every few seconds

        return Handler
