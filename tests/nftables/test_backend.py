"""The nftables Backend itself in a scratch namespace (root; run in a forked child inside it): libnftables
and netlink in-process, the canary, a restart over an existing table, failures, cleanup."""

from __future__ import annotations

import pytest

from dataplane.backend import NodeNetwork, SyncError
from dataplane.cleanup import cleanup_nftables
from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort
from dataplane.nftables.backend import NftablesBackend
from dataplane.nftables.kernel import LibNftables, Netlink
from dataplane.tracker import Snapshot
from tests.dataplane.netns import in_netns, run_in, scratch_netns
from tests.nftables.conftest import table_state

pytestmark = pytest.mark.root

NODE = NodeNetwork("node1", ("192.168.10.11", "fd00:10::11"), None, ("10.244.1.0/24", "fd00:244:1::/64"))


def services(count: int, endpoints: int, affinity: int = 0) -> Snapshot:
    found = {}
    for index in range(count):
        key = ServiceKey("default", f"s{index}")
        port = ServicePort(key, "http", "TCP", 4, f"10.96.0.{index + 1}", 80, affinity_timeout=affinity)
        eps = tuple(Endpoint(f"10.244.{index}.{n + 1}", 8080, local=n == 0) for n in range(endpoints))
        found[key] = ServiceInfo(key, (port,), (eps,))
    return Snapshot("node1", found)


def canary_and_repair() -> list[bool]:
    backend = NftablesBackend(NODE, (4, 6))
    backend.sync(services(3, 2), None)
    seen = [backend.flushed()]
    LibNftables().run("flush table ip ironlb\n")
    seen.append(backend.flushed())
    backend.sync(services(3, 2), None)
    seen.append(backend.flushed())
    LibNftables().run("delete table ip6 ironlb\n")
    seen.append(backend.flushed())
    return seen


def test_the_canary_sees_a_flush_and_a_full_sync_repairs_it():
    with scratch_netns() as netns:
        assert in_netns(netns, canary_and_repair) == [False, True, False, True]


def restart(first: Snapshot, second: Snapshot, third: Snapshot) -> str:
    NftablesBackend(NODE, (4,)).sync(first, None)
    backend = NftablesBackend(NODE, (4,))  # a restart: a new process finds the old table
    report = backend.sync(second, frozenset())
    assert report.full
    backend.sync(third, frozenset(second.services) | frozenset(third.services))
    return report.detail


def fresh(snapshot: Snapshot) -> None:
    NftablesBackend(NODE, (4,)).sync(snapshot, None)


def test_a_restart_rewrites_the_table_in_place_and_partial_syncs_follow():
    first = services(4, 3, affinity=30)  # per-Service affinity chains and sets, endpoints-3
    second = services(2, 2)  # fewer Services, other chains: the leftovers must go
    third = services(3, 1, affinity=60)
    with scratch_netns() as restarted, scratch_netns() as clean:
        assert "ipv4=full" in in_netns(restarted, restart, first, second, third)
        in_netns(clean, fresh, third)
        assert table_state(restarted, "ip") == table_state(clean, "ip")


def failing_then_recovering() -> tuple[str, bool]:
    backend = NftablesBackend(NODE, (4,))
    backend.sync(services(2, 2), None)
    # An invalid change (a port number nft refuses) fails the partial sync as a whole...
    broken = services(2, 2)
    key = ServiceKey("default", "s0")
    port = ServicePort(key, "http", "TCP", 4, "10.96.0.1", 70000)
    snapshot = Snapshot(
        "node1", {**broken.services, key: ServiceInfo(key, (port,), broken.services[key].endpoints)}
    )
    try:
        backend.sync(snapshot, frozenset({key}))
        error = ""
    except SyncError as exc:
        error = str(exc)
    # ...and the next sync, a full one, writes the good state again.
    report = backend.sync(services(2, 2), frozenset({key}))
    return error, report.full


def test_a_failed_sync_changes_nothing_and_the_next_is_full():
    with scratch_netns() as netns:
        error, full = in_netns(netns, failing_then_recovering)
        assert "ipv4" in error and full
        clean = table_state(netns, "ip")
    with scratch_netns() as netns:
        in_netns(netns, fresh, services(2, 2))
        assert table_state(netns, "ip") == clean


def present() -> bool:
    return Netlink("ip").has_table() or Netlink("ip6").has_table()


def cleaned() -> tuple[bool, bool, int, int]:
    NftablesBackend(NODE, (4, 6)).sync(services(2, 2), None)
    before = Netlink("ip").has_table() and Netlink("ip6").has_table()
    failures = cleanup_nftables()
    return before, present(), failures, cleanup_nftables()


def test_cleanup_removes_our_tables_and_nothing_else():
    with scratch_netns() as netns:
        run_in(netns, "nft", "add table ip other; add chain ip other c; add rule ip other c accept")
        before, after, failures, again = in_netns(netns, cleaned)
        assert before and not after and failures == 0
        assert again == 0  # nothing left to delete is no failure
        assert "table ip other" in run_in(netns, "nft", "list", "tables").stdout
