"""Property tests: random Service create/update/delete and config changes never give one IP to incompatible
Services nor an IP outside its pool, and a restarted allocator (fresh, rebuilt with restore()) is
indistinguishable from the one that lived through the sequence. The second test drives whole Services,
with malformed and wrong-family requests, through crashes and restarts (IRONLB_PROPERTY_EXAMPLES sets how many
sequences; the long run is recorded in docs/testing.md)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.pools import Config, ServiceAllocation
from common.services import POOL_ANNOTATION_OUT, assigned_ips
from controller.allocator import AllocationError, Allocator, Assignment
from controller.reconcile import UNCHANGED, creation_order, reconcile_service, restore_assignments
from controller.requests import ServiceRequest
from tests.unit.controller.helpers import config, pool, request

# Small address spaces so that collisions, exhaustion and sharing actually happen.
CONFIGS: list[Config] = [
    config(
        pool("a", "10.0.0.0-10.0.0.5", "fd00::-fd00::3"), pool("b", "10.0.0.8-10.0.0.11", auto_assign=False)
    ),
    config(
        pool("a", "10.0.0.2-10.0.0.7"),
        pool(
            "c",
            "10.0.0.8/31",
            "fd00::8/127",
            service_allocation=ServiceAllocation(priority=1, namespaces=("n1",)),
        ),
    ),
    config(pool("a", "10.0.0.254-10.0.1.3", "fd00::/126", avoid_buggy_ips=True), pool("b", "10.0.0.0/30")),
    config(pool("renamed", "10.0.0.0-10.0.0.5", "fd00::-fd00::3")),
    config(),
]
KEYS = [f"n{n}/s{s}" for n in range(2) for s in range(3)]
CANDIDATE_IPS = [
    "10.0.0.1",
    "10.0.0.3",
    "10.0.0.9",
    "10.0.0.255",
    "10.0.1.0",
    "fd00::1",
    "fd00::9",
    "10.9.9.9",
]

requests = st.builds(
    lambda key, requested, pool_name, sharing, ports, etp, selector, fams: request(
        key,
        requested=tuple(r for r in requested if (6 if ":" in r else 4) in fams[0])[:1],
        pool=pool_name,
        sharing_key=sharing,
        ports=tuple(sorted(ports)),
        etp=etp,
        selector=selector,
        families=fams[0],
        require_all=fams[1],
    ),
    key=st.sampled_from(KEYS),
    requested=st.lists(st.sampled_from(CANDIDATE_IPS), max_size=1),
    pool_name=st.sampled_from([None, None, "a", "b", "c", "renamed", "missing"]),
    sharing=st.sampled_from([None, "k1", "k1", "k2"]),
    ports=st.sets(st.sampled_from([(80, "TCP"), (53, "UDP"), (53, "TCP")]), min_size=1, max_size=2),
    etp=st.sampled_from(["Cluster", "Cluster", "Local"]),
    selector=st.sampled_from([(("app", "x"),), (("app", "y"),)]),
    fams=st.sampled_from([((4,), False), ((6,), False), ((4, 6), False), ((6, 4), False), ((4, 6), True)]),
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), requests),
        st.tuples(st.just("apply"), requests),
        st.tuples(st.just("apply"), requests),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("config"), st.integers(0, len(CONFIGS) - 1)),
    ),
    min_size=1,
    max_size=40,
)


def may_share(a: ServiceRequest, b: ServiceRequest) -> bool:
    """MetalLB's sharing rule, restated independently of the allocator's implementation."""
    if a.sharing_key is None or a.sharing_key != b.sharing_key or set(a.ports) & set(b.ports):
        return False
    if a.external_traffic_policy == b.external_traffic_policy == "Cluster":
        return True
    return a.external_traffic_policy == b.external_traffic_policy == "Local" and a.selector == b.selector


def check_invariants(allocator: Allocator, model: dict[str, ServiceRequest]) -> None:
    assert allocator.consistency_problems() == []
    assignments = allocator.assignments()
    assert set(assignments) == set(model)
    holders: dict[Any, list[str]] = {}
    for key, assignment in assignments.items():
        req = model[key]
        versions = [ip.version for ip in assignment.ips]
        assert assignment.ips and len(set(versions)) == len(versions)
        assert set(versions) <= set(req.families)
        if req.require_all_families:
            assert set(versions) == set(req.families)
        if req.requested_ips:
            assert set(assignment.ips) == set(req.requested_ips)
        if req.pool is not None:
            assert assignment.pool == req.pool
        for ip in assignment.ips:
            owner = allocator.pool_for(ip)
            assert owner is not None and owner.name == assignment.pool and owner.contains(ip)
            holders.setdefault(ip, []).append(key)
    for ip, keys in holders.items():
        for i, first in enumerate(keys):
            for second in keys[i + 1 :]:
                assert may_share(model[first], model[second]), (ip, first, second)
    pool_of = {ip: assignments[keys[0]].pool for ip, keys in holders.items()}
    for name, pool_stats in allocator.pool_stats().items():
        assert pool_stats.in_use == sum(1 for owner in pool_of.values() if owner == name)


def step(allocator: Allocator, model: dict[str, ServiceRequest], op: tuple[str, Any]) -> object:
    """Apply one operation like the operator shell would; returns what the caller observed."""
    kind, arg = op
    if kind == "apply":
        try:
            result: object = allocator.assign(arg)
            model[arg.key] = arg
        except AllocationError as exc:
            model.pop(arg.key, None)
            result = ("error", exc.reason)
        return result
    if kind == "delete":
        allocator.release(arg)
        model.pop(arg, None)
        return None
    withdrawn = allocator.set_config(CONFIGS[arg])
    for key in withdrawn:
        del model[key]
    return withdrawn


def restarted(
    allocator: Allocator, config_index: int, model: dict[str, ServiceRequest], seed: int
) -> Allocator:
    """A fresh allocator rebuilt from the Services' status, in an arbitrary (API list) order."""
    fresh = Allocator(CONFIGS[config_index])
    items = sorted(allocator.assignments().items())
    random.Random(seed).shuffle(items)
    for key, assignment in items:
        restored = fresh.restore(model[key], list(reversed(assignment.ips)))
        assert restored == assignment
    return fresh


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, restart_at=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_random_sequences(ops: list[tuple[str, Any]], restart_at: int, seed: int) -> None:
    lived = Allocator(CONFIGS[0])
    model: dict[str, ServiceRequest] = {}
    config_index = 0
    for op in ops[:restart_at]:
        step(lived, model, op)
        if op[0] == "config":
            config_index = op[1]
        check_invariants(lived, model)

    # Controller restart: rebuild from the assignments, then both must behave identically from here on.
    fresh = restarted(lived, config_index, model, seed)
    assert fresh.assignments() == lived.assignments()
    assert fresh.pool_stats() == lived.pool_stats()
    fresh_model = dict(model)
    for op in ops[restart_at:]:
        assert step(fresh, fresh_model, op) == step(lived, model, op)
        if op[0] == "config":
            config_index = op[1]
        check_invariants(lived, model)
        check_invariants(fresh, fresh_model)
        assert fresh.assignments() == lived.assignments()

    # And a restart at the very end reproduces the final state.
    final = restarted(lived, config_index, model, seed + 1)
    assert final.assignments() == lived.assignments()
    assert all(isinstance(a, Assignment) for a in final.assignments().values())


# ---- Services, not requests: invalid requests, crashes and restarts (issue 7) ------------------------------
#
# The controller's pure pieces driven the way the operator drives them: reconcile_service() on Service objects
# whose writes land in their status, restore_assignments() at every restart. Requests may be malformed, of the
# wrong family, or change while the controller is down. The property: no IP is ever shown by two Services
# that may not share it, and a Service never shows an IP the allocator does not hold for it.

STEPS = [0]  # operations applied, across all examples (printed with -s)
SERVICE_EXAMPLES = int(os.environ.get("IRONLB_PROPERTY_EXAMPLES", "150"))

LB_IPS = [
    None, None, None, "10.0.0.1", "10.0.0.3", "10.0.0.9", "fd00::1", "10.0.0.1,fd00::1", "10.9.9.9",
    "not-an-ip", "fd00::1%eth0", "::ffff:10.0.0.1", "10.0.0.1,10.0.0.3",
]  # fmt: skip
FAMILIES = [
    {}, {}, {"ipFamilies": ["IPv6"]}, {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]},
    {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}, {"ipFamilyPolicy": "Bogus"},
]  # fmt: skip


@st.composite
def service_specs(draw: st.DrawFn) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    prefix = draw(st.sampled_from(["metallb.io/", "metallb.universe.tf/"]))
    if (ips := draw(st.sampled_from(LB_IPS))) is not None:
        annotations[prefix + "loadBalancerIPs"] = ips
    if (pool_name := draw(st.sampled_from([None, None, "a", "b", "missing"]))) is not None:
        annotations[prefix + "address-pool"] = pool_name
    if (sharing := draw(st.sampled_from([None, "k1", "k1", "k2"]))) is not None:
        annotations[prefix + "allow-shared-ip"] = sharing
    ports = draw(st.sets(st.sampled_from([(80, "TCP"), (53, "UDP"), (53, "TCP")]), min_size=1, max_size=2))
    spec: dict[str, Any] = {
        "type": draw(st.sampled_from(["LoadBalancer"] * 6 + ["ClusterIP"])),
        "ports": [{"port": port, "protocol": protocol} for port, protocol in sorted(ports)],
        "externalTrafficPolicy": draw(st.sampled_from(["Cluster", "Cluster", "Local"])),
        "selector": {"app": draw(st.sampled_from(["x", "y"]))},
        **draw(st.sampled_from(FAMILIES)),
    }
    return {"annotations": annotations, "spec": spec}


service_operations = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from(KEYS), service_specs()),
        st.tuples(st.just("apply"), st.sampled_from(KEYS), service_specs()),
        st.tuples(st.just("apply"), st.sampled_from(KEYS), service_specs()),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("config"), st.integers(0, len(CONFIGS) - 1)),
        st.tuples(st.just("crash")),  # until the next restart, changes are not reconciled
        st.tuples(st.just("restart")),
    ),
    min_size=10,
    max_size=60,
)


class Cluster:
    """Services as the API server keeps them, and one controller's pure state over them."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.config_index = 0
        self.allocator = Allocator(CONFIGS[0])
        self.up = True
        self.created = 0
        self.pending: set[str] = set()
        self.withdrawn: dict[str, tuple[Any, ...]] = {}

    def apply(self, key: str, spec: dict[str, Any]) -> None:
        namespace, name = key.split("/")
        old = self.services.get(key)
        if old is None:
            self.created += 1
            stamp = f"2026-01-01T00:00:{self.created:02d}Z"
        else:
            stamp = old["metadata"]["creationTimestamp"]
        body = {
            "metadata": {
                "namespace": namespace, "name": name, "creationTimestamp": stamp,
                "annotations": dict(spec["annotations"]),
            },
            "spec": dict(spec["spec"]),
        }  # fmt: skip
        if old is not None and "status" in old:
            body["status"] = old["status"]
            body["metadata"]["annotations"].setdefault(
                POOL_ANNOTATION_OUT, old["metadata"]["annotations"].get(POOL_ANNOTATION_OUT, "")
            )
        self.services[key] = body
        self.drain([key])

    def delete(self, key: str) -> None:
        self.services.pop(key, None)
        self.drain([key])

    def set_config(self, index: int) -> None:
        self.config_index = index
        if not self.up:
            return
        for key in self.allocator.set_config(CONFIGS[index]):
            self.withdrawn[key] = assigned_ips(self.services.get(key) or {})
        self.drain(sorted(self.withdrawn) + sorted(self.pending))

    def restart(self) -> None:
        self.up = True
        self.allocator = Allocator(CONFIGS[self.config_index])
        self.pending.clear()
        self.withdrawn.clear()
        restore_assignments(self.allocator, self.services.values(), {}, None)
        self.check_restored()
        self.drain(sorted(self.services, key=lambda k: creation_order(self.services[k])))

    def drain(self, keys: list[str]) -> None:
        """Reconcile until nothing changes, retrying pending Services whenever an IP was released."""
        if not self.up:
            return
        queue = list(dict.fromkeys(keys))
        for _ in range(200):
            if not queue:
                return
            key = queue.pop(0)
            service = self.services.get(key)
            outcome = reconcile_service(key, service, {}, self.allocator, None, self.withdrawn.pop(key, ()))
            if service is not None:
                if outcome.ingress is not None:
                    lb = {"ingress": outcome.ingress} if outcome.ingress else {}
                    service["status"] = {"loadBalancer": lb}
                if outcome.pool_annotation is not UNCHANGED:
                    service["metadata"]["annotations"].pop(POOL_ANNOTATION_OUT, None)
                    if outcome.pool_annotation is not None:
                        service["metadata"]["annotations"][POOL_ANNOTATION_OUT] = outcome.pool_annotation
            if outcome.pending and service is not None:
                self.pending.add(key)
            else:
                self.pending.discard(key)
            if outcome.released:
                queue.extend(k for k in sorted(self.pending) if k != key and k not in queue)
        raise AssertionError(f"reconciliation did not settle: {queue}")

    def shown(self) -> dict[Any, list[str]]:
        shown: dict[Any, list[str]] = {}
        for key, service in self.services.items():
            for ip in assigned_ips(service):
                shown.setdefault(ip, []).append(key)
        return shown

    def check(self) -> None:
        """Settled: every IP a Service shows is held for it (so two Services show one IP only if the allocator
        let them share it), and only our LoadBalancer Services show IPs."""
        assert self.allocator.consistency_problems() == []
        for ip, keys in self.shown().items():
            holders = self.allocator.holders(ip)
            assert set(keys) <= holders, f"{ip} shown by {keys}, held by {sorted(holders)}"
            assert all(self.services[k]["spec"]["type"] == "LoadBalancer" for k in keys), (ip, keys)

    def check_restored(self) -> None:
        """Right after restore, before any reconciliation: every IP a LoadBalancer Service shows that lies in
        a pool is held by one of the Services showing it, so none can be given away. Exception: a Service's
        IPs that now lie in two pools, of which it holds one."""
        assert self.allocator.consistency_problems() == []
        for ip, keys in self.shown().items():
            mine = [k for k in keys if self.services[k]["spec"]["type"] == "LoadBalancer"]
            if not mine or self.allocator.pool_for(ip) is None or self.allocator.holders(ip) & set(mine):
                continue
            split = [
                k for k in mine
                if len({self.allocator.pool_for(other) for other in assigned_ips(self.services[k])}) > 1
                and self.allocator.assignment(k) is not None
            ]  # fmt: skip
            assert split, f"{ip} shown by {keys} but held by nobody"


def run_service_operations(ops: list[tuple[Any, ...]]) -> None:
    cluster = Cluster()
    for op in ops:
        STEPS[0] += 1
        kind = op[0]
        if kind == "apply":
            cluster.apply(op[1], op[2])
        elif kind == "delete":
            cluster.delete(op[1])
        elif kind == "config":
            cluster.set_config(op[1])
        elif kind == "crash":
            cluster.up = False
        else:
            cluster.restart()
        if cluster.up:
            cluster.check()
    cluster.restart()
    cluster.check()


@settings(max_examples=SERVICE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=service_operations)
def test_no_double_assignment_with_invalid_requests_across_restarts(ops: list[tuple[Any, ...]]) -> None:
    run_service_operations(ops)


@pytest.fixture(scope="module", autouse=True)
def report_steps() -> Iterator[None]:
    yield
    print(f"\nservice-level property test: {STEPS[0]} operations checked")
