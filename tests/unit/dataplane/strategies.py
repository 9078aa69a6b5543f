"""Hypothesis strategies for random Services as the dataplane models them (unit and kernel tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort

NAMES = [f"s{i}" for i in range(8)]


@st.composite
def endpoints(draw: st.DrawFn, family: int) -> tuple[Endpoint, ...]:
    hosts = draw(st.lists(st.integers(1, 40), max_size=5, unique=True))
    found = []
    for host in sorted(hosts):
        ip = f"10.244.{host % 3}.{host}" if family == 4 else f"fd00:244:{host % 3}::{host:x}"
        ready = draw(st.booleans())
        terminating = not ready and draw(st.booleans())
        found.append(
            Endpoint(
                ip=ip,
                port=draw(st.sampled_from([80, 8080])),
                ready=ready,
                serving=ready or (terminating and draw(st.booleans())),
                terminating=terminating,
                local=host % 3 == 1,
            )
        )
    return tuple(found)


@st.composite
def service_infos(draw: st.DrawFn, key: ServiceKey, index: int) -> ServiceInfo:
    ports = []
    eps = []
    families = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    count = draw(st.integers(1, 2))
    ext_local = draw(st.booleans())
    int_local = draw(st.booleans())
    affinity = draw(st.sampled_from([0, 0, 60]))
    for number in range(count):
        protocol = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
        for family in families:
            v4 = family == 4
            node_port = draw(st.sampled_from([0, 30000 + index * 4 + number]))
            lbs = draw(
                st.sampled_from([(), (f"192.168.10.{90 + index}",) if v4 else (f"fd00:10::{90 + index:x}",)])
            )
            ports.append(
                ServicePort(
                    service=key,
                    port_name=f"p{number}",
                    protocol=protocol,
                    family=family,
                    cluster_ip=f"10.96.0.{index + 1}" if v4 else f"fd00:10:96::{index + 1:x}",
                    port=80 + number,
                    node_port=node_port,
                    external_ips=draw(st.sampled_from([(), ("192.0.2.1",) if v4 else ("2001:db8::1",)])),
                    load_balancer_ips=lbs,
                    source_ranges=draw(
                        st.sampled_from([(), ("192.168.10.0/24",) if v4 else ("fd00:10::/64",)])
                    ),
                    firewalled=draw(st.booleans()),
                    affinity_timeout=affinity,
                    external_policy_local=ext_local and bool(node_port or lbs),
                    internal_policy_local=int_local,
                    health_check_node_port=32000 + index if ext_local and lbs else 0,
                )
            )
            eps.append(draw(endpoints(family)))
    return ServiceInfo(key, tuple(ports), tuple(eps))


@st.composite
def snapshots(draw: st.DrawFn) -> dict[ServiceKey, ServiceInfo]:
    chosen = draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True))
    return {
        ServiceKey("ns", name): draw(service_infos(ServiceKey("ns", name), NAMES.index(name)))
        for name in chosen
    }
