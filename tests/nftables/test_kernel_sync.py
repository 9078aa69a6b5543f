"""nftables mode against the kernel, in throwaway network namespaces (root): what the renderer writes loads,
and partial syncs leave the kernel exactly as one full sync of the same snapshot does."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.backend import RenderConfig
from dataplane.nftables.kernel import NftProcess
from dataplane.nftables.transaction import KernelObjects, Record, plan_full, plan_partial
from tests.nftables.conftest import nft, table_state
from tests.unit.dataplane.strategies import snapshots

pytestmark = pytest.mark.root

CONFIGS = {
    "ip": RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",)),
    "ip6": RenderConfig(family=6, local_cidrs=("fd00:244::/48",), node_ips=("fd00:10::11",)),
}


def objects(netns: str, family: str) -> KernelObjects | None:
    """What the backend reads over netlink before a full sync, read here with nft (tables are small)."""
    try:
        listing = json.loads(nft(netns, "-j", "-t", "list", "table", family, "ironlb"))
    except AssertionError:
        return None
    found: dict[str, set[str]] = {"chain": set(), "set": set(), "map": set()}
    for item in listing["nftables"]:
        for kind in found:
            if kind in item:
                found[kind].add(item[kind]["name"])
    return KernelObjects(frozenset(found["chain"]), frozenset(found["set"]), frozenset(found["map"]))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(snapshots(), min_size=2, max_size=4))
def test_partial_syncs_leave_the_kernel_as_a_full_sync_does(netns_factory, sequence):
    partial_ns, full_ns = netns_factory(), netns_factory()
    for family, config in CONFIGS.items():
        record = Record()
        plan = plan_full(record, config, sequence[0], None)
        NftProcess(["ip", "netns", "exec", partial_ns]).run(plan.text)
        plan.commit()
        previous = sequence[0]
        for snapshot in sequence[1:]:
            plan = plan_partial(record, {key: snapshot.get(key) for key in set(previous) | set(snapshot)})
            if plan.text:
                NftProcess(["ip", "netns", "exec", partial_ns]).run(plan.text)
            plan.commit()
            previous = snapshot
        NftProcess(["ip", "netns", "exec", full_ns]).run(plan_full(Record(), config, previous, None).text)
        expected = table_state(full_ns, family)
        assert table_state(partial_ns, family) == expected

        # A full sync over the table partial syncs built (a restart, a resync) changes nothing either.
        again = plan_full(Record(), config, previous, objects(partial_ns, family))
        NftProcess(["ip", "netns", "exec", partial_ns]).run(again.text)
        assert table_state(partial_ns, family) == expected
        nft(full_ns, "delete", "table", family, "ironlb")


def test_a_full_sync_removes_what_an_earlier_run_left(netns_factory):
    netns = netns_factory()
    config = CONFIGS["ip"]
    run = NftProcess(["ip", "netns", "exec", netns]).run
    # An earlier run's table, with a chain and a set nobody wants any more and a stale element.
    nft(netns, "-f", "-", input=plan_full(Record(), config, {}, None).text)
    nft(
        netns,
        "-f",
        "-",
        input="add chain ip ironlb service-OLD-default/gone/tcp/http\n"
        "add set ip ironlb affinity-OLD-default/gone/tcp/http__10.244.1.9/80 { type ipv4_addr; }\n"
        "add element ip ironlb service-ips { 10.96.9.9 . tcp . 80 : drop }\n",
    )
    run(plan_full(Record(), config, {}, objects(netns, "ip")).text)
    empty_ns = netns_factory()
    nft(empty_ns, "-f", "-", input=plan_full(Record(), config, {}, None).text)
    assert table_state(netns, "ip") == table_state(empty_ns, "ip")
