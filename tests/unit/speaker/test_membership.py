"""The membership state machine on a simulated network (bench/speaker_membership_sim.py): detection, leave,
isolation, partitions, refutation, joins, anti-entropy and replays. Time is simulated and seeded, so every run
is the same."""

from __future__ import annotations

from bench.speaker_membership_sim import SimNetwork, stands_down
from speaker.membership import (
    ALIVE,
    DEAD,
    Fact,
    Gossip,
    Heartbeat,
    Membership,
    Ping,
    Settings,
)

NAMES = [f"node{i}" for i in range(1, 11)]


def everyone_agrees(net: SimNetwork, alive: set[str]) -> bool:
    return all(net.members[n].alive() == frozenset(alive) for n in alive if n in net.members)


def test_steady_state_heartbeats_to_successors_and_no_false_deaths_on_lossy_links() -> None:
    net = SimNetwork(NAMES, seed=2, loss=0.05)
    watch = [net.watch(n, False) for n in NAMES]
    net.run_until(10.0)
    assert all(not w.at for w in watch), [w.subject for w in watch if w.at]
    assert everyone_agrees(net, set(NAMES))
    member = net.members["node1"]
    assert len(member.watched()) == 3 and member.reachable() and not member.isolated(net.now)
    # Load: 3 heartbeats per 100 ms, plus one reachability ping per 200 ms and the acks for others' pings.
    per_second = net.sent["node1"] / 10.0
    assert 30 <= per_second <= 45, per_second


def test_a_killed_member_is_known_dead_by_all_within_a_second() -> None:
    net = SimNetwork(NAMES, seed=3, loss=0.01)
    net.run_until(1.0)
    killed = net.watch("node4", False)
    net.kill("node4")
    net.run_until(3.0)
    assert set(killed.at) == set(NAMES) - {"node4"}
    assert max(killed.at.values()) <= 1.0, killed.at
    assert everyone_agrees(net, set(NAMES) - {"node4"})


def test_a_member_that_leaves_is_known_gone_at_once() -> None:
    net = SimNetwork(NAMES, seed=4)
    net.run_until(1.0)
    left = net.watch("node5", False)
    net.leave("node5")
    net.run_until(1.05)
    assert set(left.at) == set(NAMES) - {"node5"}
    assert max(left.at.values()) < 0.05
    fact = net.members["node1"].fact("node5")
    assert fact is not None and fact.status == 2  # LEFT


def test_a_cut_off_member_declares_nobody_dead_and_knows_it_is_isolated() -> None:
    net = SimNetwork(NAMES, seed=5, loss=0.01)
    net.run_until(1.0)
    dropped = net.watch("node6", False)
    net.blocked = lambda a, b: "node6" in (a, b)
    net.run_until(1.6)
    cut = net.members["node6"]
    assert cut.isolated(net.now) and stands_down(cut, len(NAMES), net.now)
    net.run_until(4.0)
    assert set(dropped.at) == set(NAMES) - {"node6"} and max(dropped.at.values()) <= 1.0
    assert cut.alive() == frozenset(NAMES), "an isolated member must not declare the others dead"
    assert cut.isolated(net.now)
    # The link comes back: the others find it again, it refutes its death with a higher incarnation.
    net.blocked = lambda a, b: False
    net.run_until(6.0)
    assert everyone_agrees(net, set(NAMES))
    assert cut.incarnation > 1 and not cut.isolated(net.now) and cut.reachable()


def test_the_small_side_of_a_partition_stands_down_and_the_views_heal() -> None:
    names = [f"n{i:02d}" for i in range(40)]
    minority = set(names[::8])  # 5 of 40
    net = SimNetwork(names, seed=6, loss=0.01)
    net.run_until(1.0)
    net.blocked = lambda a, b: (a in minority) != (b in minority)
    net.run_until(4.0)
    assert all(stands_down(net.members[m], len(names), net.now) for m in minority)
    majority = set(names) - minority
    assert not any(stands_down(net.members[m], len(names), net.now) for m in majority)
    assert everyone_agrees(net, majority)
    net.blocked = lambda a, b: False
    net.run_until(8.0)
    assert everyone_agrees(net, set(names))
    assert not any(stands_down(net.members[m], len(names), net.now) for m in names)


def test_two_members_one_dies_the_other_declares_it_without_witnesses() -> None:
    net = SimNetwork(["a", "b"], seed=7)
    net.run_until(1.0)
    net.kill("b")
    net.run_until(2.0)
    assert net.members["a"].alive() == {"a"}
    assert not net.members["a"].isolated(net.now) and net.members["a"].reachable()


def test_two_of_three_die_the_survivor_needs_the_api_as_witness() -> None:
    net = SimNetwork(["a", "b", "c"], seed=8)
    net.run_until(1.0)
    net.kill("b")
    net.kill("c")
    net.run_until(4.0)
    survivor = net.members["a"]
    # Alone it cannot tell its own isolation from their deaths: it declares nothing and stands down.
    assert survivor.alive() == {"a", "b", "c"} and survivor.isolated(net.now)
    survivor.set_stale(["b", "c"])  # their Leases stopped being renewed
    net.run_until(5.0)
    assert survivor.alive() == {"a"} and not survivor.isolated(net.now)


def test_a_false_death_is_refuted_by_a_higher_incarnation() -> None:
    net = SimNetwork(NAMES, seed=9)
    net.run_until(1.0)
    net.inject("node2", Gossip("node9", 1, 10**6, (Fact("node3", 1, DEAD),)), source="node9")
    net.run_until(1.5)
    assert everyone_agrees(net, set(NAMES))
    assert net.members["node3"].incarnation == 2
    assert all(net.members[n].fact("node3") == Fact("node3", 2, ALIVE) for n in NAMES)


def test_a_restarted_member_joins_and_supersedes_its_old_self() -> None:
    net = SimNetwork(NAMES, seed=10)
    net.run_until(1.0)
    net.kill("node7")
    net.run_until(2.5)
    assert everyone_agrees(net, set(NAMES) - {"node7"})
    back = net.watch("node7", True)
    fresh = net.restart("node7", incarnation=5)
    assert fresh.alive() == {"node7"}, "it starts knowing nobody"
    net.run_until(3.0)
    assert fresh.joined and set(back.at) >= set(NAMES) - {"node7"}
    assert everyone_agrees(net, set(NAMES))


def test_a_new_cluster_forms_from_members_that_know_nothing() -> None:
    net = SimNetwork(NAMES, seed=11, converged=False)
    net.run_until(3.0)
    assert everyone_agrees(net, set(NAMES))


def test_anti_entropy_repairs_a_member_that_missed_a_fact() -> None:
    net = SimNetwork(NAMES, seed=12, settings=Settings(retransmit_mult=1))
    net.run_until(1.0)
    # node8 misses node5's death: everything for it is lost while the others learn it.
    net.blocked = lambda a, b: b == "node8" and a != "node7"
    net.kill("node5")
    net.run_until(1.2)
    net.blocked = lambda a, b: False
    net.run_until(5.0)
    assert everyone_agrees(net, set(NAMES) - {"node5"})


def test_replays_and_stale_incarnations_are_dropped() -> None:
    member = Membership("a", 1, 0.0, universe={"a": ("a", 1), "b": ("b", 1)})
    heartbeat = Heartbeat("b", 3, 7, 0)
    member.receive(0.1, ("b", 1), heartbeat)
    received = member.stats.received
    assert received == 1
    member.receive(0.2, ("b", 1), heartbeat)
    member.receive(0.3, ("b", 1), Heartbeat("b", 2, 99, 0))
    assert member.stats.received == received and member.stats.dropped_replays == 2
    # Out of order within the window is fine.
    member.receive(0.4, ("b", 1), Ping("b", 3, 9, 1))
    member.receive(0.5, ("b", 1), Ping("b", 3, 8, 2))
    assert member.stats.received == received + 2


def test_the_simulation_benchmark_renders_its_table() -> None:
    from bench import speaker_membership_sim

    result = speaker_membership_sim.run_size(10, loss=0.01)
    assert result.false_deaths == 0 and result.cut_declared == 0
    assert max(result.kill) <= 1.0 and len(result.kill) == 9
    table = speaker_membership_sim.render([result], 0.01, "cmd")
    assert table.startswith("## Speaker membership (simulation)") and "| 10 |" in table
    quick = speaker_membership_sim.run_size(10, loss=0.01, partition=False)
    assert quick.kill == result.kill and not quick.partitioned
    assert "not run" in speaker_membership_sim.render([quick], 0.01, "cmd")
