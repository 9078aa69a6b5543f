"""In-process simulation of the speakers' membership protocol (speaker/membership.py) at scale.

Every member is the real state machine; the network is a discrete-event queue with per-message latency, loss,
and cuts (a killed member, a member cut off from all others, a group partition). Time is simulated, so 5,000
members run on one core, slower than real time but with exact timings.

Run from the repository root:

    .venv/bin/python -m bench.speaker_membership_sim [--sizes 10,500,5000] [--loss 0.01] [--update-docs]

Per size it reports, in one run: messages and bytes per member per second in the steady state (lossy links,
no failure), false deaths, the time until every member knows of a SIGKILLed member, the time until every
member knows of a member that left (SIGTERM), a member cut off from all others (how soon the others drop it,
and how soon it knows it is isolated; that it declares nobody dead), a partition of 10% of the members (how
soon the minority loses its majority, and how the views converge after it heals).
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from speaker.membership import ALIVE, Address, Fact, Membership, Message, Send, Settings, View
from speaker.membership_codec import encode

PORT = 7946
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Speaker membership (simulation)"


def address(name: str) -> Address:
    return (name, PORT)


@dataclass
class Observed:
    """When each member learned that ``subject`` went down (or came up)."""

    subject: str
    alive: bool
    since: float
    at: dict[str, float] = field(default_factory=dict)


class SimNetwork:
    """Members, links and a clock. ``blocked(a, b)`` says whether a message from a to b is lost for sure."""

    def __init__(
        self,
        names: Iterable[str],
        settings: Settings | None = None,
        seed: int = 1,
        latency: tuple[float, float] = (0.0002, 0.001),
        loss: float = 0.0,
        converged: bool = True,
        measure_bytes: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.now = 0.0
        self.names = list(names)
        self.universe = {name: address(name) for name in self.names}
        self.by_address = {address(name): name for name in self.names}
        self.members: dict[str, Membership] = {}
        self.blocked: Callable[[str, str], bool] = lambda a, b: False
        self.sent: dict[str, int] = {}
        self.bytes = 0
        self.measure_bytes = measure_bytes
        self.watchers: list[Observed] = []
        self._queue: list[tuple[float, int, int, str, object]] = []
        self._counter = 0
        self._scheduled: dict[str, float] = {}
        view = View.of(self.universe, {n: Fact(n, 1, ALIVE) for n in self.names}) if converged else None
        for name in self.names:
            self.members[name] = self._member(name, 1, view)

    def _member(self, name: str, incarnation: int, view: View | None) -> Membership:
        member = Membership(
            name,
            incarnation,
            self.now,
            self.settings,
            random.Random(self.rng.getrandbits(64)),
            universe=self.universe,
            view=view,
        )
        self._schedule(name, member.next_deadline())
        return member

    # --- events ---------------------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, name: str, payload: object) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, kind, name, payload))

    def _schedule(self, name: str, at: float) -> None:
        at = max(at, self.now)
        if at < self._scheduled.get(name, math.inf):
            self._scheduled[name] = at
            self._push(at, 0, name, None)

    def _send(self, sender: str, sends: list[Send]) -> None:
        self.sent[sender] = self.sent.get(sender, 0) + len(sends)
        for send in sends:
            if self.measure_bytes and self.rng.random() < 0.05:
                # A 5% sample of the datagrams, as encoded on the wire (encoding is slow in a simulation).
                self.bytes += 20 * len(encode(send.message, b"k" * 32))
            target = self.by_address.get(send.to)
            if target is None or self.blocked(sender, target) or self.rng.random() < self.loss:
                continue
            delay = self.rng.uniform(*self.latency)
            self._push(self.now + delay, 1, target, (address(sender), send.message))

    def _observe(self, name: str, member: Membership) -> None:
        for change in member.drain_changes():
            for observed in self.watchers:
                if (
                    change.name == observed.subject
                    and change.alive == observed.alive
                    and name not in observed.at
                ):
                    observed.at[name] = self.now - observed.since

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            at, _, kind, name, payload = heapq.heappop(self._queue)
            self.now = at
            member = self.members.get(name)
            if member is None:
                continue
            if kind == 0:
                if self._scheduled.get(name) != at:
                    continue  # superseded by an earlier schedule
                del self._scheduled[name]
                sends = member.tick(at)
            else:
                assert isinstance(payload, tuple)
                sends = member.receive(at, payload[0], payload[1])
            self._send(name, sends)
            self._observe(name, member)
            self._schedule(name, max(member.next_deadline(), at + 1e-4))
        self.now = until

    # --- scenarios ------------------------------------------------------------------------------------------

    def watch(self, subject: str, alive: bool) -> Observed:
        observed = Observed(subject, alive, self.now)
        self.watchers.append(observed)
        return observed

    def kill(self, name: str) -> None:
        """SIGKILL: the member stops at once, says nothing."""
        self.members.pop(name)
        self._scheduled.pop(name, None)

    def restart(self, name: str, incarnation: int) -> Membership:
        member = self._member(name, incarnation, None)
        self.members[name] = member
        return member

    def leave(self, name: str) -> None:
        """SIGTERM: the member says goodbye, then stops."""
        member = self.members.pop(name)
        self._scheduled.pop(name, None)
        self._send(name, member.leave(self.now))

    def inject(self, name: str, message: Message, source: str) -> None:
        self._push(self.now, 1, name, (address(source), message))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_while(net: SimNetwork, condition: Callable[[], bool], limit: float, step: float = 0.05) -> None:
    """Run until ``condition`` turns false (checked every ``step``), at most ``limit`` simulated seconds."""
    end = net.now + limit
    while net.now < end and condition():
        net.run_until(min(end, net.now + step))


def stands_down(member: Membership, expected: int, now: float) -> bool:
    """What the speaker checks before announcing: not isolated, reaches most, sees a majority."""
    return member.isolated(now) or not member.reachable() or len(member.alive()) * 2 <= expected


def others_agree(net: SimNetwork, expected_alive: set[str], among: Iterable[str]) -> bool:
    return all(net.members[n].alive() == frozenset(expected_alive) for n in among if n in net.members)


@dataclass
class SizeResult:
    size: int
    messages_per_member_s: float
    bytes_per_member_s: float
    false_deaths: int
    kill: list[float]
    leave: list[float]
    cut_dropped: list[float]
    cut_isolated: float
    cut_declared: int
    cut_heal: float
    partition_quorum_lost: float
    partition_majority: list[float]
    partition_heal: float
    partition_heal_messages: float
    wall: float
    partitioned: bool = True  # False: the partition phase was skipped (--partition-up-to)


def run_size(size: int, loss: float, seed: int = 7, partition: bool = True) -> SizeResult:
    started = time.monotonic()
    names = [f"node-{i:05d}" for i in range(size)]
    net = SimNetwork(names, seed=seed, loss=loss, measure_bytes=True)
    rng = random.Random(seed)
    # Steady state: lossy links, nobody fails. Warm up, then count.
    net.run_until(1.0)
    base_sent, base_bytes = dict(net.sent), net.bytes
    false_alarm = [net.watch(n, False) for n in rng.sample(names, min(size, 50))]
    net.run_until(3.0)
    span = 2.0
    messages = (sum(net.sent.values()) - sum(base_sent.values())) / size / span
    byte_rate = (net.bytes - base_bytes) / size / span
    net.measure_bytes = False
    false_deaths = sum(len(o.at) for o in false_alarm)
    net.watchers.clear()

    # SIGKILL of one member.
    victim = rng.choice(names)
    killed = net.watch(victim, False)
    net.kill(victim)
    run_while(net, lambda: len(killed.at) < len(net.members), 3.0)
    kill_times = list(killed.at.values())

    # SIGTERM (leave) of another.
    leaver = rng.choice([n for n in names if n in net.members])
    left = net.watch(leaver, False)
    net.leave(leaver)
    run_while(net, lambda: len(left.at) < len(net.members), 1.0)
    leave_times = list(left.at.values())

    # One member cut off from all others (its link to the peers down, or a firewall).
    cut = rng.choice(list(net.members))
    cut_member = net.members[cut]
    dropped = net.watch(cut, False)
    net.blocked = lambda a, b: cut in (a, b)
    isolated_at = math.nan
    start = net.now
    while net.now < start + 3.0:
        net.run_until(net.now + 0.01)
        if math.isnan(isolated_at) and cut_member.isolated(net.now):
            isolated_at = net.now - start
        if not math.isnan(isolated_at) and len(dropped.at) >= len(net.members) - 1 and net.now > start + 1.5:
            break
    declared = sum(1 for n in cut_member.alive() if n != cut)  # what it still believes alive
    cut_declared = len(net.members) - 1 - declared  # members it declared dead: should be 0
    # Heal: the others find it again (reconnect pings), it refutes its death.
    net.blocked = lambda a, b: False
    heal_start = net.now
    everyone = set(net.members)
    cut_heal = math.nan
    while net.now < heal_start + 10.0:
        net.run_until(net.now + 0.05)
        if others_agree(net, everyone, everyone):
            cut_heal = net.now - heal_start
            break

    if not partition:  # the longest phase in simulated time: at the largest sizes it may be left out
        return SizeResult(
            size=size,
            messages_per_member_s=messages,
            bytes_per_member_s=byte_rate,
            false_deaths=false_deaths,
            kill=kill_times,
            leave=leave_times,
            cut_dropped=list(dropped.at.values()),
            cut_isolated=isolated_at,
            cut_declared=cut_declared,
            cut_heal=cut_heal,
            partition_quorum_lost=math.nan,
            partition_majority=[],
            partition_heal=math.nan,
            partition_heal_messages=math.nan,
            wall=time.monotonic() - started,
            partitioned=False,
        )

    # A partition: 10% of the members on one side.
    alive_now = sorted(net.members)
    minority = set(rng.sample(alive_now, max(1, len(alive_now) // 10)))
    majority = set(alive_now) - minority
    net.blocked = lambda a, b: (a in minority) != (b in minority)
    part_start = net.now
    seen_by_majority = [net.watch(m, False) for m in list(minority)[:20]]
    quorum_lost = math.nan
    while net.now < part_start + 8.0:
        net.run_until(net.now + 0.05)
        if math.isnan(quorum_lost) and all(
            stands_down(net.members[m], len(alive_now), net.now) for m in minority
        ):
            quorum_lost = net.now - part_start
        if not math.isnan(quorum_lost) and all(len(o.at) >= len(majority) for o in seen_by_majority):
            break
    majority_times = [max(o.at.values()) for o in seen_by_majority if o.at]
    net.blocked = lambda a, b: False
    heal_start = net.now
    sent_before = sum(net.sent.values())
    part_heal = math.nan
    while net.now < heal_start + 20.0:
        net.run_until(net.now + 0.1)
        if others_agree(net, set(alive_now), alive_now):
            part_heal = net.now - heal_start
            break
    heal_messages = (sum(net.sent.values()) - sent_before) / len(alive_now)
    return SizeResult(
        size=size,
        messages_per_member_s=messages,
        bytes_per_member_s=byte_rate,
        false_deaths=false_deaths,
        kill=kill_times,
        leave=leave_times,
        cut_dropped=list(dropped.at.values()),
        cut_isolated=isolated_at,
        cut_declared=cut_declared,
        cut_heal=cut_heal,
        partition_quorum_lost=quorum_lost,
        partition_majority=majority_times,
        partition_heal=part_heal,
        partition_heal_messages=heal_messages,
        wall=time.monotonic() - started,
    )


def fmt_times(values: list[float], expected: int) -> str:
    if not values:
        return "never"
    text = f"{percentile(values, 0.5):.2f} / {max(values):.2f}"
    if len(values) < expected:
        text += f" ({len(values)}/{expected} knew)"
    return text


def render(results: list[SizeResult], loss: float, command: str) -> str:
    header = [
        "members", "msgs / member / s (steady)", "bytes / member / s", "false deaths (2 s)",
        "SIGKILL known by all (s)", "SIGTERM known by all (s)", "cut-off member dropped by all (s)",
        "cut-off member sees itself isolated (s)", "members it declared dead", "cut heals, views agree (s)",
        "10% partition: minority stands down, all of it (s)", "majority drops minority (s)",
        "partition heals, views agree (s)", "messages / member to heal", "wall time (s)",
    ]  # fmt: skip
    lines = [
        SECTION,
        "",
        "`bench/speaker_membership_sim.py` runs the real membership state machine (speaker/membership.py)",
        "for every member in one process, over a simulated network: latency 0.2-1 ms per message,",
        f"{loss:.0%} of all messages lost at random, default settings (heartbeat 100 ms to 3 successors,",
        "suspicion after 500 ms, 200 ms for witnesses, fanout 3). Times are simulated seconds, p50 / max",
        "over the members that had to learn the fact.",
        "",
        f"Command: `{command}`. Machine: {machine()}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in results:
        others = r.size - 1
        partition = (
            f"{r.partition_quorum_lost:.2f} | {fmt_times(r.partition_majority, 1)} | "
            f"{r.partition_heal:.2f} | {r.partition_heal_messages:.0f}"
            if r.partitioned
            else "not run | not run | not run | not run"
        )
        lines.append(
            f"| {r.size:,} | {r.messages_per_member_s:.1f} | {r.bytes_per_member_s:,.0f} | "
            f"{r.false_deaths} | "
            f"{fmt_times(r.kill, others)} | {fmt_times(r.leave, others - 1)} | "
            f"{fmt_times(r.cut_dropped, others - 2)} | {r.cut_isolated:.2f} | {r.cut_declared} | "
            f"{r.cut_heal:.2f} | {partition} | {r.wall:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def machine() -> str:
    """The machine, as docs/benchmarks.md records it: CPUs, model, Python and the load from other work."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    python = platform.python_version()
    return f"nproc={os.cpu_count()}, CPU `{cpu or 'unknown'}`, Python {python}, load average {load:.1f}"


def update_docs(section: str) -> None:
    """Replace the section of docs/benchmarks.md titled as ``section`` (its first line), or append it."""
    title = section.split("\n", 1)[0]
    text = DOC.read_text()
    pattern = re.compile(re.escape(title) + r"\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n"), text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,500,5000")
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument(
        "--partition-up-to",
        type=int,
        default=0,
        help="run the partition phase only at sizes up to this (default: at every size)",
    )
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = run_size(size, args.loss, partition=not args.partition_up_to or size <= args.partition_up_to)
        print(f"size={size} done in {result.wall:.0f}s", file=sys.stderr)
        results.append(result)
    command = (
        ".venv/bin/python -m bench.speaker_membership_sim"
        + (f" --sizes {args.sizes}" if args.sizes != "10,500,5000" else "")
        + (f" --partition-up-to {args.partition_up_to}" if args.partition_up_to else "")
    )
    section = render(results, args.loss, command)
    print(section)
    if args.update_docs:
        update_docs(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["SimNetwork", "main", "percentile", "statistics"]
