"""k8s.serving: /metrics, /healthz, /livez, /readyz with registered checks, and where it binds."""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from k8s.serving import HealthServer, default_address


def fetch(server: HealthServer, path: str) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection(server.address, server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


def test_metrics_and_health_endpoints() -> None:
    registry = CollectorRegistry()
    Counter("ironlb_test_things", "Things counted", registry=registry).inc(3)
    synced = {"ok": False}
    with HealthServer("127.0.0.1", 0, registry=registry) as server:
        server.add_check("ping", lambda: None, liveness=True)
        server.add_check("informers-synced", lambda: None if synced["ok"] else "services not listed yet")

        status, text, content_type = fetch(server, "/metrics")
        assert (
            status == 200 and "ironlb_test_things_total 3.0" in text and content_type.startswith("text/plain")
        )

        assert fetch(server, "/livez")[:2] == (200, "ok")  # readiness-only checks do not decide liveness
        status, text, _ = fetch(server, "/readyz")
        assert status == 500
        assert text == "[+]ping ok\n[-]informers-synced failed: reason withheld\nreadyz check failed\n"
        assert fetch(server, "/healthz")[0] == 500
        assert fetch(server, "/readyz/ping")[:2] == (200, "ok")
        assert fetch(server, "/readyz/informers-synced")[0] == 500
        assert fetch(server, "/readyz/nothing")[0] == 404
        assert fetch(server, "/elsewhere")[0] == 404

        synced["ok"] = True
        assert fetch(server, "/readyz")[:2] == (200, "ok")
        status, text, _ = fetch(server, "/readyz?verbose")
        assert (status, text) == (200, "[+]ping ok\n[+]informers-synced ok\nreadyz check passed\n")

        def broken() -> str | None:
            raise RuntimeError("the check itself failed")

        server.add_check("ping", broken, liveness=True)  # same name: replaces
        assert fetch(server, "/livez")[0] == 500


def test_binds_the_pod_ip_or_loopback_never_every_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_IP", raising=False)
    assert default_address() == "127.0.0.1"
    with HealthServer() as server:
        assert server.address == "127.0.0.1"
        assert fetch(server, "/livez")[0] == 200
    monkeypatch.setenv("POD_IP", "127.0.0.2")
    with HealthServer() as server:
        assert server._server.server_address[0] == "127.0.0.2"
        assert fetch(server, "/livez")[0] == 200
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass  # not listening on the other addresses


def test_ipv6_address() -> None:
    with HealthServer("::1", 0) as server:
        assert fetch(server, "/healthz")[:2] == (200, "ok")


def test_a_client_that_hangs_up_early_is_one_log_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="k8s.serving")
    hung_up = threading.Event()

    def answers_after_the_hang_up() -> None:
        hung_up.wait(5)
        return None

    with HealthServer("127.0.0.1", 0) as server:
        server.add_check("slow", answers_after_the_hang_up)
        client = socket.create_connection((server.address, server.port), timeout=5)
        client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        # SO_LINGER 0: close sends a reset, so the server's answer fails as a probe's early hang-up does.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        hung_up.set()
        deadline = time.monotonic() + 10
        while not any("serving_client_gone" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the failed answer was not logged"
            time.sleep(0.05)
    assert "Traceback" not in capfd.readouterr().err
