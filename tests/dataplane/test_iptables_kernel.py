"""iptables mode against the kernel, in scratch network namespaces (no lab, no API server).

- Random snapshots render rulesets that iptables-restore accepts (both families).
- After a random sequence of changes, partial syncs leave exactly the kernel state one full sync makes.
- The backend adopts an earlier run's rules (stale chains go, nothing is flushed), notices a flush behind its
  back through the canary, and --cleanup removes everything of ours and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.backend import NodeNetwork, RenderConfig
from dataplane.iptables.restore import Record, apply_partial, full_restore, partial_restore
from dataplane.iptables.rules import JUMPS, ServiceRules, render_service, render_static
from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort
from dataplane.tracker import Snapshot
from tests.dataplane.conftest import REPO
from tests.dataplane.netns import in_netns, normalized_save, run_in, scratch_netns
from tests.unit.dataplane.strategies import snapshots

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

CONFIGS = {
    4: RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",)),
    6: RenderConfig(family=6, local_cidrs=("fd00:244::/48",), node_ips=("fd00:10::11",)),
}
RESTORE = {4: "iptables-nft-restore", 6: "ip6tables-nft-restore"}
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def render(snapshot: Mapping[ServiceKey, ServiceInfo], family: int) -> dict[ServiceKey, ServiceRules]:
    rendered = {key: render_service(info, CONFIGS[family]) for key, info in snapshot.items()}
    return {key: rules for key, rules in rendered.items() if rules.chains or rules.shared}


def restore(netns: str, family: int, text: str, *flags: str) -> None:
    result = run_in(netns, RESTORE[family], "--noflush", *flags, text=text)
    assert result.returncode == 0, f"{result.stderr}\n{text}"


@SLOW
@given(snapshots())
def test_random_snapshots_load(snapshot: dict[ServiceKey, ServiceInfo]) -> None:
    with scratch_netns() as netns:
        for family in (4, 6):
            text = full_restore(render_static(CONFIGS[family]), render(snapshot, family), missing_jumps=JUMPS)
            restore(netns, family, text, "--test")


@SLOW
@given(st.lists(snapshots(), min_size=2, max_size=4), st.sampled_from([None, 2]))
def test_partial_syncs_equal_one_full_sync(
    sequence: list[dict[ServiceKey, ServiceInfo]], per_transaction: int | None
) -> None:
    with scratch_netns() as stepwise, scratch_netns() as direct:
        for family in (4, 6):
            static = render_static(CONFIGS[family])
            first = render(sequence[0], family)
            restore(
                stepwise,
                family,
                full_restore(static, first, missing_jumps=JUMPS, services_per_transaction=per_transaction),
            )
            record = Record()
            record.reset(static, first)
            previous = sequence[0]
            for snapshot in sequence[1:]:
                changed = set(previous) | set(snapshot)
                updates = {
                    key: (render_service(snapshot[key], CONFIGS[family]) if key in snapshot else None)
                    for key in changed
                }
                updates = {
                    k: (v if v is not None and (v.chains or v.shared) else None) for k, v in updates.items()
                }
                text = partial_restore(record, updates)
                if text:
                    restore(stepwise, family, text)
                apply_partial(record, updates)
                previous = snapshot
            restore(direct, family, full_restore(static, render(previous, family), missing_jumps=JUMPS))
            assert normalized_save(stepwise, family) == normalized_save(direct, family)


# ---- the backend in a namespace ----------------------------------------------------------------------------

NODE = NodeNetwork("node1", addresses=("192.168.10.11",), pod_cidrs=("10.244.1.0/24",))


def snapshot_of(*names: str, endpoints: int = 2) -> Snapshot:
    services = {}
    for index, name in enumerate(names):
        key = ServiceKey("default", name)
        port = ServicePort(key, "http", "TCP", 4, f"10.96.0.{index + 10}", 80)
        eps = tuple(Endpoint(f"10.244.1.{index * 10 + e + 2}", 8080) for e in range(endpoints))
        services[key] = ServiceInfo(key, (port,), (eps,))
    return Snapshot("node1", services)


def restart_scenario() -> dict[str, str]:
    from dataplane.iptables.backend import IptablesBackend

    first = IptablesBackend(NODE, "nft", (4,))
    first.sync(snapshot_of("a", "b"), None)
    before = run_in_here("iptables-save", "-t", "nat")
    # A new process (the dataplane restarted) while Service b was deleted: b's chains go, a's stay.
    second = IptablesBackend(NODE, "nft", (4,))
    second.sync(snapshot_of("a"), None)
    return {"before": before, "after": run_in_here("iptables-save", "-t", "nat")}


def run_in_here(*argv: str) -> str:
    import subprocess

    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_a_restart_adopts_the_rules_and_removes_stale_chains() -> None:
    with scratch_netns() as netns:
        result = in_netns(netns, restart_scenario)
    assert "default/b:http" in result["before"] and "default/b:http" not in result["after"]
    assert result["after"].count("-j KUBE-SERVICES") == 2  # PREROUTING and OUTPUT, not duplicated
    assert "default/a:http cluster IP" in result["after"]


def canary_scenario() -> list[bool | str]:
    from dataplane.iptables.backend import IptablesBackend

    backend = IptablesBackend(NODE, "nft", (4,))
    backend.sync(snapshot_of("a"), None)
    states: list[bool | str] = [backend.flushed()]
    run_in_here("iptables", "-t", "nat", "-F")
    run_in_here("iptables", "-t", "nat", "-X")
    states.append(backend.flushed())
    backend.sync(snapshot_of("a"), None)
    states.append(backend.flushed())
    states.append(run_in_here("iptables-save", "-t", "nat"))
    return states


def test_the_canary_reveals_a_flush_and_a_full_sync_repairs_it() -> None:
    with scratch_netns() as netns:
        before, after_flush, repaired, rules = in_netns(netns, canary_scenario)
    assert (before, after_flush, repaired) == (False, True, False)
    assert "default/a:http cluster IP" in str(rules)


def test_cleanup_removes_ours_and_nothing_else() -> None:
    foreign = (
        "*filter\n:FOREIGN - [0:0]\n-A INPUT -s 192.0.2.1/32 -j FOREIGN\nCOMMIT\n"
        "*nat\n-A PREROUTING -d 192.0.2.9/32 -j RETURN\nCOMMIT\n"
    )
    with scratch_netns() as netns:
        for variant in ("nft", "legacy"):
            for family in (4, 6):
                tool = f"{'iptables' if family == 4 else 'ip6tables'}-{variant}-restore"
                text = full_restore(
                    render_static(CONFIGS[family]),
                    render(snapshot_of("a").services, family) if family == 4 else {},
                    missing_jumps=JUMPS,
                )
                assert run_in(netns, tool, "--noflush", text=text).returncode == 0
                if family == 4:
                    assert run_in(netns, tool, "--noflush", text=foreign).returncode == 0
        done = run_in(netns, sys.executable, "-m", "dataplane", "--cleanup")
        assert done.returncode == 0, done.stderr
        for variant in ("nft", "legacy"):
            for family in (4, 6):
                rules = normalized_save(netns, family, variant)
                assert "KUBE-" not in rules, (variant, family, rules)
            rules4 = normalized_save(netns, 4, variant)
            assert ":FOREIGN" in rules4 and "-s 192.0.2.1/32 -j FOREIGN" in rules4 and "192.0.2.9" in rules4


def detect_scenario() -> tuple[str, str]:
    from dataplane.iptables.kernel import detect_variant

    return detect_variant()


def test_the_backend_in_use_is_detected() -> None:
    with scratch_netns() as netns:
        assert (
            run_in(netns, "iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "ACCEPT").returncode == 0
        )
        variant, why = in_netns(netns, detect_scenario)
        assert variant == "legacy" and "more rules" in why
    with scratch_netns() as netns:
        assert run_in(netns, "iptables-nft", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT").returncode == 0
        assert in_netns(netns, detect_scenario)[0] == "nft"
    assert REPO.exists()
