import json

from dataplane.healthcheck import HealthCheck, health_check, response
from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort

WEB = ServiceKey("default", "web")


def test_local_ready_endpoints_are_counted_once_per_pod() -> None:
    v4 = ServicePort(WEB, "http", "TCP", 4, "10.96.0.1", 80, health_check_node_port=32000)
    v6 = ServicePort(WEB, "http", "TCP", 6, "fd00::1", 80, health_check_node_port=32000)
    info = ServiceInfo(
        WEB,
        (v4, v6),
        (
            (Endpoint("10.244.1.5", 80, local=True), Endpoint("10.244.1.6", 80, local=True, ready=False)),
            (Endpoint("fd00:244:1::5", 80, local=True), Endpoint("fd00:244:2::5", 80)),
        ),
    )
    assert health_check(info) == HealthCheck(WEB, 32000, 1)
    assert health_check(ServiceInfo(WEB, (ServicePort(WEB, "", "TCP", 4, "10.96.0.1", 80),), ((),))) is None


def test_responses_are_kube_proxys() -> None:
    status, headers, body = response(HealthCheck(WEB, 32000, 2), proxy_healthy=True)
    assert status == 200 and headers["X-Load-Balancing-Endpoint-Weight"] == "2"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "service": {"namespace": "default", "name": "web"},
        "localEndpoints": 2,
        "serviceProxyHealthy": True,
    }
    assert response(HealthCheck(WEB, 32000, 0), True)[0] == 503
    assert response(HealthCheck(WEB, 32000, 2), False)[0] == 503
