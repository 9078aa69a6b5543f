from dataplane.conntrack import Flush, changed_keys, stale_flows
from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort
from dataplane.tracker import Snapshot

DNS = ServiceKey("kube-system", "dns")


def snapshot(*ips: str, protocol: str = "UDP", node_port: int = 30053) -> Snapshot:
    port = ServicePort(
        DNS, "dns", protocol, 4, "10.96.0.10", 53, node_port=node_port, external_ips=("192.0.2.5",)
    )
    endpoints = tuple(Endpoint(ip, 5353) for ip in ips)
    return Snapshot("node1", {DNS: ServiceInfo(DNS, (port,), (endpoints,))})


def test_a_vanished_endpoint_has_its_entries_deleted_for_every_address_and_the_node_port() -> None:
    flows = stale_flows(snapshot("10.244.1.5", "10.244.2.5"), snapshot("10.244.2.5"), {DNS})
    assert flows == [
        Flush(4, "", 30053, "10.244.1.5"),
        Flush(4, "10.96.0.10", 53, "10.244.1.5"),
        Flush(4, "192.0.2.5", 53, "10.244.1.5"),
    ]
    assert flows[1].argv() == [
        "conntrack", "-D", "-f", "ipv4", "-p", "udp",
        "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.5",
    ]  # fmt: skip


def test_a_port_that_gets_its_first_endpoint_forgets_the_rejected_flows() -> None:
    flows = stale_flows(snapshot(), snapshot("10.244.1.5"), {DNS})
    assert Flush(4, "10.96.0.10", 53, "") in flows and Flush(4, "", 30053, "") in flows


def test_tcp_and_unchanged_endpoints_need_nothing() -> None:
    assert stale_flows(snapshot("10.244.1.5", protocol="TCP"), snapshot(protocol="TCP"), {DNS}) == []
    assert stale_flows(snapshot("10.244.1.5"), snapshot("10.244.1.5", "10.244.2.5"), {DNS}) == []


def test_a_deleted_service_flushes_its_endpoints() -> None:
    flows = stale_flows(snapshot("10.244.1.5"), Snapshot("node1", {}), {DNS})
    assert Flush(4, "10.96.0.10", 53, "10.244.1.5") in flows


def test_after_a_full_sync_every_service_is_compared() -> None:
    before, after = snapshot("10.244.1.5"), Snapshot("node1", {})
    assert changed_keys(before, after, None) == {DNS}
    assert changed_keys(before, after, frozenset()) == frozenset()
