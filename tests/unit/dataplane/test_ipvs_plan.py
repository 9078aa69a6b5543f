"""IPVS mode's record and plans against a model of the kernel that refuses anything a real kernel would.

Random change sequences synced one by one (partial syncs, and a full one after a conflict, as the backend
does) must leave the kernel as one full sync of the last snapshot would, but for real servers still
terminating at weight 0; a full sync over what an earlier run left keeps what is still wanted in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.ipvs.plan import (
    ADD,
    ADDRESS,
    DEL,
    ENTRY,
    RS,
    SET,
    VS,
    Drain,
    GracePolicy,
    KernelView,
    Op,
    Record,
    plan_drained,
    plan_full,
    plan_partial,
)
from dataplane.ipvs.render import IpvsConfig, RealServer, VirtualServer, VirtualServerConfig, render_service
from dataplane.model import ServiceInfo, ServiceKey
from tests.unit.dataplane.strategies import snapshots

CONFIG = IpvsConfig(
    families=(4, 6),
    nodeport_addresses=("192.168.10.11", "fd00:10::11"),
    node_ips=("192.168.10.11", "fd00:10::11"),
)
GRACE = GracePolicy(timeout=60.0, now=0.0)


@dataclass
class FakeKernel:
    """IPVS, kube-ipvs0 and ipsets as sets and maps; any add of what exists or delete of what does not fails,
    as the kernel's would (the backend tolerates those; the plans must not need it)."""

    virtual_servers: dict[VirtualServer, VirtualServerConfig] = field(default_factory=dict)
    dests: dict[VirtualServer, dict[RealServer, int]] = field(default_factory=dict)
    addresses: set[str] = field(default_factory=set)
    entries: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            if op.target == VS:
                assert op.vs is not None
                if op.action == ADD:
                    assert op.vs not in self.virtual_servers, op
                    assert op.config is not None
                    self.virtual_servers[op.vs] = op.config
                    self.dests[op.vs] = {}
                elif op.action == SET:
                    assert op.vs in self.virtual_servers and op.config is not None, op
                    self.virtual_servers[op.vs] = op.config
                else:
                    assert op.vs in self.virtual_servers, op
                    del self.virtual_servers[op.vs]
                    del self.dests[op.vs]
            elif op.target == RS:
                assert op.vs in self.dests and op.real is not None, op
                dests = self.dests[op.vs]
                if op.action == ADD:
                    assert op.real not in dests, op
                    dests[op.real] = op.weight
                elif op.action == SET:
                    assert op.real in dests, op
                    dests[op.real] = op.weight
                else:
                    assert op.real in dests, op
                    del dests[op.real]
            elif op.target == ADDRESS:
                if op.action == ADD:
                    assert op.address not in self.addresses, op
                    self.addresses.add(op.address)
                else:
                    self.addresses.remove(op.address)
            else:
                entries = self.entries.setdefault(op.set_name, set())
                if op.action == ADD:
                    assert op.entry not in entries, op
                    entries.add(op.entry)
                else:
                    entries.remove(op.entry)

    def view(self) -> KernelView:
        return KernelView(
            dict(self.virtual_servers),
            {vs: dict(d) for vs, d in self.dests.items()},
            set(self.addresses),
            {name: set(e) for name, e in self.entries.items() if e},
        )

    def serving(self) -> tuple[object, ...]:
        """The kernel without its terminating (weight 0) real servers and empty sets."""
        dests = {vs: {r: w for r, w in d.items() if w} for vs, d in self.dests.items()}
        entries = {name: e for name, e in self.entries.items() if e}
        return self.virtual_servers, dests, self.addresses, entries


def rendered(services: dict[ServiceKey, ServiceInfo]):
    return {key: render_service(info, CONFIG) for key, info in services.items()}


def full_kernel(services: dict[ServiceKey, ServiceInfo]) -> FakeKernel:
    kernel = FakeKernel()
    plan = plan_full(Record(), rendered(services), KernelView(), GRACE)
    kernel.apply(plan.ops)
    return kernel


@settings(max_examples=60, deadline=None)
@given(st.lists(snapshots(), min_size=2, max_size=5))
def test_partial_syncs_track_a_full_sync(sequence):
    kernel = FakeKernel()
    record = Record()
    previous: dict[ServiceKey, ServiceInfo] = {}
    for services in sequence:
        if not record.valid:
            plan = plan_full(record, rendered(services), kernel.view(), GRACE)
        else:
            changed = {k for k in set(previous) | set(services) if previous.get(k) != services.get(k)}
            plan = plan_partial(
                record,
                {k: render_service(services[k], CONFIG) if k in services else None for k in changed},
                GRACE,
            )
        kernel.apply(plan.ops)
        plan.commit()
        if plan.conflicts:
            record.invalidate()  # as the backend: the next sync is a full one
        previous = services
    if not record.valid:
        plan = plan_full(record, rendered(previous), kernel.view(), GRACE)
        kernel.apply(plan.ops)
        plan.commit()
    assert kernel.serving() == full_kernel(previous).serving()
    # The record describes the kernel exactly, terminating real servers included.
    assert record.kernel.virtual_servers == kernel.virtual_servers
    assert record.kernel.dests == kernel.dests
    assert record.kernel.addresses == kernel.addresses
    assert {n: e for n, e in record.kernel.entries.items() if e} == {
        n: e for n, e in kernel.entries.items() if e
    }
    for vs, real in record.terminating:
        assert kernel.dests[vs][real] == 0


@settings(max_examples=40, deadline=None)
@given(snapshots(), snapshots())
def test_a_restart_adopts_what_an_earlier_run_left(before, after):
    kernel = full_kernel(before)
    stranger = VirtualServer(4, "TCP", "10.1.2.3", 22)  # someone else's virtual server: never ours
    kernel.virtual_servers[stranger] = VirtualServerConfig("wlc")
    kernel.dests[stranger] = {}
    view = kernel.view()
    ours = {
        vs
        for vs in view.virtual_servers
        if vs.address in view.addresses or vs.address in CONFIG.nodeport_addresses
    }
    record = Record()
    plan = plan_full(record, rendered(after), view, GRACE, ours.__contains__)
    kernel.apply(plan.ops)
    plan.commit()
    expected = full_kernel(after)
    assert kernel.virtual_servers.pop(stranger) == VirtualServerConfig("wlc")
    kernel.dests.pop(stranger)
    assert kernel.serving() == expected.serving()
    # Nothing still wanted was deleted on the way (no connection through it was cut).
    kept = set(full_kernel(before).virtual_servers) & set(expected.virtual_servers)
    assert not [op for op in plan.ops if op.action == DEL and op.target == VS and op.vs in kept]


def test_drained_or_timed_out_real_servers_are_deleted():
    vs = VirtualServer(4, "TCP", "10.96.0.10", 80)
    busy, idle, late, gone = (RealServer(f"10.244.1.{i}", 80) for i in range(1, 5))
    record = Record(valid=True)
    record.kernel.virtual_servers[vs] = VirtualServerConfig()
    record.kernel.dests[vs] = {busy: 0, idle: 0, late: 0}
    record.terminating = {(vs, busy): 100.0, (vs, idle): 100.0, (vs, late): 50.0, (vs, gone): 100.0}
    states = [Drain(vs, busy, 3), Drain(vs, idle, 0), Drain(vs, late, 7), Drain(vs, gone, None)]
    plan = plan_drained(record, states, now=60.0)
    assert [str(op) for op in plan.ops] == [
        "del TCP 10.96.0.10:80 -> 10.244.1.2:80",  # no connections left
        "del TCP 10.96.0.10:80 -> 10.244.1.3:80",  # its grace timeout passed
    ]
    plan.commit()
    assert record.terminating == {(vs, busy): 100.0}
    assert record.kernel.dests[vs] == {busy: 0}


def test_two_services_sharing_a_load_balancer_ip_keep_it_bound_until_both_go():
    from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service
    from tests.unit.dataplane.test_iptables_golden import snapshot

    objects = []
    for name, port in (("a", 80), ("b", 443)):
        ports = [{"name": "p", "port": port, "nodePort": 30000 + port}]
        ingress = [{"ip": "192.168.10.90"}]
        cluster_ips = (f"10.96.0.{port % 200}",)
        objects.append(
            service(name=name, cluster_ips=cluster_ips, type="LoadBalancer", ports=ports, ingress=ingress)
        )
        objects.append(endpoint_slice(name, [endpoint("10.244.1.5")], ports=[{"name": "p", "port": 8080}]))
    services = snapshot(objects).services
    record = Record()
    plan_full(record, rendered(dict(services)), KernelView(), GRACE).commit()
    plan = plan_partial(record, {ServiceKey("default", "a"): None}, GRACE)
    gone = [str(op) for op in plan.ops]
    assert "del address 10.96.0.80 dev kube-ipvs0" in gone  # a's cluster IP goes
    assert "del address 192.168.10.90 dev kube-ipvs0" not in gone  # b still needs the shared one
    assert "del KUBE-IPVS-IPS 192.168.10.90" not in gone
    plan.commit()
    plan = plan_partial(record, {ServiceKey("default", "b"): None}, GRACE)
    assert "del address 192.168.10.90 dev kube-ipvs0" in [str(op) for op in plan.ops]
    assert [op.target for op in plan.ops if op.action == DEL and op.target == ENTRY]
