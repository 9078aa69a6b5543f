"""What IPVS mode sends to the kernel: the record of what it wrote, and the operations that move the kernel
from there to a new snapshot (pure).

The record holds what each Service rendered to (render.py) and the kernel as our writes left it: virtual
servers, real servers with their weights, addresses on kube-ipvs0 and ipset entries, the last two counted by
the Services that want them (two Services may share a LoadBalancer IP). A partial sync diffs only the changed
Services against their own last rendering; a full sync diffs everything against the record, or, when the
record is not trusted (at start, after a failure), against what the kernel holds.

Graceful termination, as kube-proxy's (graceful_termination.go): a real server that goes away keeps its
connections. TCP and SCTP ones get weight 0 (no new connections) and are deleted when their connections have
drained or their deadline passed (`drained`); UDP ones are deleted at once, and with expire_nodest_conn the
next datagram of a flow to them is scheduled anew.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dataplane.ipvs.render import (
    FLAG_PERSISTENT,
    INTERFACE,
    RealServer,
    ServiceObjects,
    VirtualServer,
    VirtualServerConfig,
)
from dataplane.model import ServiceKey

ADD, SET, DEL = "add", "set", "del"
VS, RS, ENTRY, ADDRESS = "vs", "rs", "entry", "address"
# Order of a sync's operations: what a Service needs exists before its address makes it reachable, and an
# address goes before what it led to.
PHASES = ((ADD, VS), (SET, VS), (ADD, RS), (SET, RS), (DEL, RS), (ADD, ENTRY), (ADD, ADDRESS), (DEL, ADDRESS),
          (DEL, ENTRY), (DEL, VS))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Op:
    action: str  # add, set, del
    target: str  # vs, rs, entry, address
    vs: VirtualServer | None = None
    config: VirtualServerConfig | None = None
    real: RealServer | None = None
    weight: int = 1
    set_name: str = ""
    entry: str = ""
    comment: str = ""
    address: str = ""

    def __str__(self) -> str:
        """ipvsadm's and ipset's words: what an operator reads in the debug log and the golden files."""
        if self.target == VS:
            text = f"{self.action} {self.vs}"
            if self.config is not None:
                text += f" {self.config.scheduler}"
                if self.config.persistent:
                    text += f" persistent {self.config.timeout}"
                if self.config.flags & ~FLAG_PERSISTENT:
                    text += f" flags {self.config.flags & ~FLAG_PERSISTENT:#x}"
            return text
        if self.target == RS:
            weight = "" if self.action == DEL else f" masq weight {self.weight}"
            return f"{self.action} {self.vs} -> {self.real}{weight}"
        if self.target == ENTRY:
            comment = f' comment "{self.comment}"' if self.comment else ""
            return f"{self.action} {self.set_name} {self.entry}{comment}"
        return f"{self.action} address {self.address} dev {INTERFACE}"


def ordered(ops: Iterable[Op]) -> list[Op]:
    rank = {phase: index for index, phase in enumerate(PHASES)}
    return sorted(ops, key=lambda op: rank[(op.action, op.target)])


@dataclass
class KernelView:
    """IPVS mode's objects in the kernel: from the record, or read back (kernel.py) when the record is not
    trusted."""

    virtual_servers: dict[VirtualServer, VirtualServerConfig] = field(default_factory=dict)
    dests: dict[VirtualServer, dict[RealServer, int]] = field(default_factory=dict)  # real server -> weight
    addresses: set[str] = field(default_factory=set)
    entries: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Record:
    valid: bool = False
    services: dict[ServiceKey, ServiceObjects] = field(default_factory=dict)
    owners: dict[VirtualServer, ServiceKey] = field(default_factory=dict)
    kernel: KernelView = field(default_factory=KernelView)
    addresses: Counter[str] = field(default_factory=Counter)  # address -> Services binding it
    entries: dict[str, Counter[str]] = field(default_factory=dict)  # set -> entry -> Services
    terminating: dict[tuple[VirtualServer, RealServer], float] = field(default_factory=dict)  # -> deadline

    def invalidate(self) -> None:
        self.valid = False


@dataclass
class Plan:
    ops: list[Op]
    services: int
    conflicts: list[str]
    _apply: Callable[[], None]

    def commit(self) -> None:
        """The ops went through: the record now describes the kernel."""
        self._apply()


@dataclass(frozen=True, slots=True)
class GracePolicy:
    timeout: float  # seconds a removed TCP/SCTP real server keeps its connections at most
    now: float


def _retire(vs: VirtualServer, real: RealServer, weight: int, grace: GracePolicy, ops: list[Op],
            terminating: dict[tuple[VirtualServer, RealServer], float]) -> int | None:  # fmt: skip
    """A real server leaving `vs`: its weight afterwards (None: deleted)."""
    if vs.protocol == "UDP" or grace.timeout <= 0:
        ops.append(Op(DEL, RS, vs, real=real))
        terminating.pop((vs, real), None)
        return None
    if weight != 0:
        ops.append(Op(SET, RS, vs, real=real, weight=0))
    terminating.setdefault((vs, real), grace.now + grace.timeout)
    return 0


def _real_server_ops(
    vs: VirtualServer,
    current: Mapping[RealServer, int],
    wanted: frozenset[RealServer],
    grace: GracePolicy,
    ops: list[Op],
    terminating: dict[tuple[VirtualServer, RealServer], float],
) -> dict[RealServer, int]:
    """Ops that give `vs` the real servers `wanted` (weight 1); the weights afterwards."""
    after: dict[RealServer, int] = {}
    for real in sorted(wanted):
        weight = current.get(real)
        if weight is None:
            ops.append(Op(ADD, RS, vs, real=real))
        elif weight != 1:
            ops.append(Op(SET, RS, vs, real=real))  # back from terminating: serves new connections again
        terminating.pop((vs, real), None)
        after[real] = 1
    for real in sorted(set(current) - wanted):
        weight_after = _retire(vs, real, current[real], grace, ops, terminating)
        if weight_after is not None:
            after[real] = weight_after
    return after


def plan_partial(
    record: Record, updates: Mapping[ServiceKey, ServiceObjects | None], grace: GracePolicy
) -> Plan:
    """Ops for the changed Services (None: gone); the record is updated by `commit()`."""
    ops: list[Op] = []
    conflicts: list[str] = []
    kernel = record.kernel
    owners = dict(record.owners)
    claimed: dict[VirtualServer, VirtualServerConfig] = {}  # wanted after this plan, with their config
    dests: dict[VirtualServer, dict[RealServer, int]] = {}  # their real servers' weights afterwards
    released: set[VirtualServer] = set()  # no Service wants them any more
    terminating = dict(record.terminating)
    address_delta: Counter[str] = Counter()
    entry_delta: dict[str, Counter[str]] = {}
    comments: dict[tuple[str, str], str] = {}

    for key, new in sorted(updates.items()):
        old = record.services.get(key) or ServiceObjects()
        new_objects = new or ServiceObjects()
        for vs in sorted(set(old.virtual_servers) - set(new_objects.virtual_servers)):
            if owners.get(vs) == key:
                del owners[vs]
                released.add(vs)
        for vs, config in sorted(new_objects.virtual_servers.items()):
            owner = owners.get(vs)
            if owner is not None and owner != key and (owner not in updates or vs in claimed):
                conflicts.append(f"{vs} is {owner}'s; {key} wants it too")
                continue
            owners[vs] = key
            released.discard(vs)
            current_config = claimed.get(vs) or kernel.virtual_servers.get(vs)
            current_dests: Mapping[RealServer, int] = {}
            if current_config is None:
                ops.append(Op(ADD, VS, vs, config=config))
            else:
                if current_config != config:
                    ops.append(Op(SET, VS, vs, config=config))
                current_dests = dests[vs] if vs in dests else kernel.dests.get(vs, {})
            claimed[vs] = config
            dests[vs] = _real_server_ops(
                vs, current_dests, new_objects.real_servers.get(vs, frozenset()), grace, ops, terminating
            )
        for address in old.addresses:
            address_delta[address] -= 1
        for address in new_objects.addresses:
            address_delta[address] += 1
        for name, old_entries in old.entries.items():
            entry_delta.setdefault(name, Counter()).subtract(old_entries.keys())
        for name, new_entries in new_objects.entries.items():
            entry_delta.setdefault(name, Counter()).update(new_entries.keys())
            for text, comment in new_entries.items():
                comments.setdefault((name, text), comment)

    for vs in sorted(released):
        if vs in kernel.virtual_servers:
            ops.append(Op(DEL, VS, vs))
        for pair in [p for p in terminating if p[0] == vs]:
            del terminating[pair]
    addresses = record.addresses.copy()
    for address, change_by in sorted(address_delta.items()):
        before = addresses[address]
        addresses[address] = before + change_by
        if before <= 0 < addresses[address]:
            ops.append(Op(ADD, ADDRESS, address=address))
        elif addresses[address] <= 0 < before:
            ops.append(Op(DEL, ADDRESS, address=address))
        if addresses[address] <= 0:
            del addresses[address]
    entries = {name: users.copy() for name, users in record.entries.items()}
    for name, delta in sorted(entry_delta.items()):
        users = entries.setdefault(name, Counter())
        for text, change in sorted(delta.items()):
            had = users[text]
            users[text] = had + change
            if had <= 0 < users[text]:
                ops.append(Op(ADD, ENTRY, set_name=name, entry=text, comment=comments.get((name, text), "")))
            elif users[text] <= 0 < had:
                ops.append(Op(DEL, ENTRY, set_name=name, entry=text))
            if users[text] <= 0:
                del users[text]

    def apply() -> None:
        for key, new in updates.items():
            if new is None or new.empty:
                record.services.pop(key, None)
            else:
                record.services[key] = new
        record.owners = owners
        for vs in released:
            kernel.virtual_servers.pop(vs, None)
            kernel.dests.pop(vs, None)
        for vs, config in claimed.items():
            kernel.virtual_servers[vs] = config
            kernel.dests[vs] = dests[vs]
        record.terminating = terminating
        record.addresses = addresses
        kernel.addresses = set(addresses)
        record.entries = {name: users for name, users in entries.items() if users}
        kernel.entries = {name: set(users) for name, users in record.entries.items()}

    return Plan(ordered(ops), len(updates), conflicts, apply)


def plan_full(
    record: Record,
    services: Mapping[ServiceKey, ServiceObjects],
    kernel: KernelView,
    grace: GracePolicy,
    ours: Callable[[VirtualServer], bool] = lambda vs: True,
) -> Plan:
    """Ops that make `kernel` (the record's view, or what the kernel holds) match every Service; `ours` says
    which virtual servers not wanted any more are ours to delete (at start: those on kube-ipvs0's addresses
    and on our node ports). The record is rebuilt by `commit()`."""
    ops: list[Op] = []
    conflicts: list[str] = []
    owners: dict[VirtualServer, ServiceKey] = {}
    configs: dict[VirtualServer, VirtualServerConfig] = {}
    wanted_dests: dict[VirtualServer, frozenset[RealServer]] = {}
    addresses: Counter[str] = Counter()
    entries: dict[str, Counter[str]] = {}
    comments: dict[tuple[str, str], str] = {}
    kept = {key: objects for key, objects in services.items() if not objects.empty}
    for key, objects in sorted(kept.items()):
        for vs, config in objects.virtual_servers.items():
            if vs in owners:
                conflicts.append(f"{vs} is {owners[vs]}'s; {key} wants it too")
                continue
            owners[vs] = key
            configs[vs] = config
            wanted_dests[vs] = objects.real_servers.get(vs, frozenset())
        addresses.update(objects.addresses)
        for name, set_entries in objects.entries.items():
            entries.setdefault(name, Counter()).update(set_entries.keys())
            for text, comment in set_entries.items():
                comments.setdefault((name, text), comment)

    terminating = {pair: deadline for pair, deadline in record.terminating.items() if pair[0] in configs}
    dests: dict[VirtualServer, dict[RealServer, int]] = {}
    for vs, config in sorted(configs.items()):
        current = kernel.virtual_servers.get(vs)
        if current is None:
            ops.append(Op(ADD, VS, vs, config=config))
        elif current != config:
            ops.append(Op(SET, VS, vs, config=config))
        current_dests = kernel.dests.get(vs, {}) if current is not None else {}
        dests[vs] = _real_server_ops(vs, current_dests, wanted_dests[vs], grace, ops, terminating)
    for vs in sorted(set(kernel.virtual_servers) - set(configs)):
        if ours(vs):
            ops.append(Op(DEL, VS, vs))
    for address in sorted(set(addresses) - kernel.addresses):
        ops.append(Op(ADD, ADDRESS, address=address))
    for address in sorted(kernel.addresses - set(addresses)):
        ops.append(Op(DEL, ADDRESS, address=address))
    for name in sorted(set(entries) | set(kernel.entries)):
        wanted = set(entries.get(name, ()))
        present = kernel.entries.get(name, set())
        for text in sorted(wanted - present):
            ops.append(Op(ADD, ENTRY, set_name=name, entry=text, comment=comments.get((name, text), "")))
        for text in sorted(present - wanted):
            ops.append(Op(DEL, ENTRY, set_name=name, entry=text))

    def apply() -> None:
        record.services = dict(kept)
        record.owners = owners
        record.kernel = KernelView(
            dict(configs), dests, set(addresses), {name: set(counts) for name, counts in entries.items()}
        )
        record.addresses = addresses
        record.entries = entries
        record.terminating = terminating
        record.valid = True

    return Plan(ordered(ops), len(kept), conflicts, apply)


@dataclass(frozen=True, slots=True)
class Drain:
    """A terminating real server as the kernel reports it."""

    vs: VirtualServer
    real: RealServer
    connections: int | None  # active + inactive; None: the kernel has no such real server any more


def plan_drained(record: Record, states: Iterable[Drain], now: float) -> Plan:
    """Delete the terminating real servers whose connections drained or whose deadline passed."""
    ops: list[Op] = []
    done: list[tuple[VirtualServer, RealServer]] = []
    for state in states:
        pair = (state.vs, state.real)
        deadline = record.terminating.get(pair)
        if deadline is None:
            continue
        if state.connections is None:
            done.append(pair)
        elif state.connections == 0 or now >= deadline:
            ops.append(Op(DEL, RS, state.vs, real=state.real))
            done.append(pair)

    def apply() -> None:
        for vs, real in done:
            record.terminating.pop((vs, real), None)
            weights = record.kernel.dests.get(vs)
            if weights is not None:
                weights.pop(real, None)

    return Plan(ops, 0, [], apply)
