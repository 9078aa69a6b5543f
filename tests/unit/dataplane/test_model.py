import pytest

from dataplane.model import DEFAULT_AFFINITY_TIMEOUT, Endpoint, parse_service
from tests.unit.dataplane.helpers import service


def test_clusterip_service_has_one_port_per_family():
    parsed = parse_service(service(cluster_ips=("10.96.0.10", "fd00:10:96::a")))
    assert [(p.family, p.cluster_ip, p.port, p.protocol) for p in parsed.ports] == [
        (4, "10.96.0.10", 80, "TCP"),
        (6, "fd00:10:96::a", 80, "TCP"),
    ]
    assert parsed.ports[0].name == "default/web:http"
    assert not parsed.ports[0].externally_accessible and parsed.problems == ()


def test_unnamed_port_name_is_the_service():
    parsed = parse_service(service(ports=[{"port": 53, "protocol": "UDP"}]))
    assert parsed.ports[0].name == "default/web" and parsed.ports[0].protocol == "UDP"


@pytest.mark.parametrize(
    "body",
    [
        service(cluster_ips=("None",)),
        service(cluster_ips=()),
        service(type="ExternalName", cluster_ips=(), externalName="example.com"),
        {"metadata": {"name": "broken"}},
    ],
    ids=["headless", "no-cluster-ip", "externalname", "empty"],
)
def test_services_without_a_cluster_ip_get_no_ports(body):
    assert parse_service(body).ports == ()


def test_nodeport_loadbalancer_and_external_ips_by_family():
    parsed = parse_service(
        service(
            type="LoadBalancer",
            cluster_ips=("10.96.0.10", "fd00:10:96::a"),
            ports=[{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080}],
            ingress=[
                {"ip": "192.168.10.90", "ipMode": "VIP"},
                {"ip": "fd00:10::90"},
                {"ip": "192.168.10.91", "ipMode": "Proxy"},
                {"hostname": "lb.example.com"},
            ],
            externalIPs=["192.0.2.7", "2001:db8::7", "192.0.2.7"],
            loadBalancerSourceRanges=["192.168.10.0/24"],
        )
    )
    v4, v6 = parsed.ports
    assert v4.node_port == v6.node_port == 30080
    assert v4.load_balancer_ips == ("192.168.10.90",) and v6.load_balancer_ips == ("fd00:10::90",)
    assert v4.external_ips == ("192.0.2.7",) and v6.external_ips == ("2001:db8::7",)
    assert v4.source_ranges == ("192.168.10.0/24",) and v6.source_ranges == ()
    # The Service restricts sources, so the IPv6 address (no IPv6 range given) admits nobody, not everybody.
    assert v4.firewalled and v6.firewalled


def test_ingress_of_a_non_loadbalancer_is_ignored():
    parsed = parse_service(service(type="ClusterIP", ingress=[{"ip": "192.168.10.90"}]))
    assert parsed.ports[0].load_balancer_ips == ()


def test_traffic_policies_and_health_check_port():
    parsed = parse_service(
        service(
            type="LoadBalancer",
            ports=[{"port": 80, "nodePort": 30080}],
            externalTrafficPolicy="Local",
            internalTrafficPolicy="Local",
            healthCheckNodePort=32000,
        )
    )
    port = parsed.ports[0]
    assert port.external_policy_local and port.internal_policy_local and port.health_check_node_port == 32000
    assert port.uses_local_endpoints and port.uses_cluster_endpoints  # pods short-circuit to any endpoint


def test_external_policy_local_needs_external_access():
    parsed = parse_service(service(externalTrafficPolicy="Local", healthCheckNodePort=32000))
    assert not parsed.ports[0].external_policy_local and parsed.ports[0].health_check_node_port == 0


def test_session_affinity_timeout():
    assert parse_service(service()).ports[0].affinity_timeout == 0
    assert (
        parse_service(service(sessionAffinity="ClientIP")).ports[0].affinity_timeout
        == DEFAULT_AFFINITY_TIMEOUT
    )
    config = {"clientIP": {"timeoutSeconds": 30}}
    parsed = parse_service(service(sessionAffinity="ClientIP", sessionAffinityConfig=config))
    assert parsed.ports[0].affinity_timeout == 30


def test_bad_fields_are_skipped_and_named():
    parsed = parse_service(
        service(
            ports=[
                {"name": "ok", "port": 80},
                {"name": "big", "port": 70000},
                {"name": "icmp", "port": 1, "protocol": "ICMP"},
                {"name": "ok", "port": 81},
            ],
            externalIPs=["nope"],
            loadBalancerSourceRanges=["10.0.0.0/33"],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": -1}},
        )
    )
    assert [p.port_name for p in parsed.ports] == ["ok"]
    assert [p.field for p in parsed.problems] == [
        "spec.externalIPs[0]",
        "spec.loadBalancerSourceRanges[0]",
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        "spec.ports[1].port",
        "spec.ports[2].protocol",
        "spec.ports[3].name",
    ]
    assert parsed.ports[0].affinity_timeout == DEFAULT_AFFINITY_TIMEOUT


def test_endpoint_address_brackets_ipv6():
    assert Endpoint("10.0.0.1", 80).address == "10.0.0.1:80"
    assert Endpoint("fd00::1", 80).address == "[fd00::1]:80"
