"""Property test: random Service create/update/delete and config changes never give one IP to incompatible
Services nor an IP outside its pool, and a restarted allocator (fresh, rebuilt with restore()) is
indistinguishable from the one that lived through the sequence."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.pools import Config, ServiceAllocation
from controller.allocator import AllocationError, Allocator, Assignment
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
