"""iptables-restore input for full and partial syncs, and the record of what was written (pure).

Both kinds of sync are sent with --noflush (the tables hold other programs' rules too).

- A partial sync touches only the Services that changed: their own chains are declared (flushed) and
  refilled when their rules differ, dropped chains are deleted after the rules that jumped to them, and the
  shared chains (KUBE-SERVICES, KUBE-NODEPORTS, the filter chains) are edited rule by rule: `-D` the rule that
  went away, `-I` the new one at the position the full sync would give it. So the kernel ends up exactly as
  after a full sync, and the cost does not grow with the number of Services. One transaction per table.
- A full sync declares every chain of ours, writes every rule, deletes stale service chains and inserts the
  jumps from the built-in chains that are missing. With the nft backend it is split into transactions of a few
  dozen Services each (see docs/benchmarks.md: iptables-nft's --noflush restore does a sorted-list insertion
  per chain reference, quadratic in the chains of one transaction, while each transaction costs the kernel a
  walk of the table): every Service's chains change in one transaction, and KUBE-SERVICES, which makes them
  reachable, is rewritten last. With the legacy backend, one transaction.

Shared chains keep their rules sorted by (jump target, rule), descending: deterministic, so partial and full
syncs agree, and it is the order in which iptables-nft's chain-name list insertion is cheapest.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dataplane.iptables.rules import (
    CANARY_TABLES,
    FILTER,
    KUBE_MARK_MASQ,
    KUBE_POSTROUTING,
    KUBE_PROXY_CANARY,
    KUBE_SERVICES,
    MANGLE,
    NAT,
    SHARED_CHAINS,
    Jump,
    ServiceRules,
    StaticRules,
)
from dataplane.model import ServiceKey

TABLE_ORDER = (FILTER, NAT, MANGLE)
ChainRef = tuple[str, str]
SortKey = tuple[str, str]


def shared_sort_key(spec: str) -> SortKey:
    """Rules in shared chains are ordered by this key, largest first."""
    _, _, target = spec.rpartition(" -j ")
    return (target, spec)


@dataclass
class Record:
    """What this process wrote to one family's tables: the only source of truth for partial syncs (the kernel
    is never listed to find it). `valid` is False until a full sync succeeds, and again after any failure."""

    static: StaticRules | None = None
    services: dict[ServiceKey, ServiceRules] = field(default_factory=dict)
    # Each shared chain's rules as sort keys, ascending (the chain holds them in the reverse order).
    shared: dict[ChainRef, list[SortKey]] = field(default_factory=dict)
    valid: bool = False

    def chain_names(self) -> set[str]:
        return {name for rules in self.services.values() for name in rules.chains}

    def reset(self, static: StaticRules, services: Mapping[ServiceKey, ServiceRules]) -> None:
        """After a successful full sync of exactly these rules."""
        self.static = static
        self.services = dict(services)
        self.shared = {ref: sorted(_shared_keys(services, ref)) for ref in SHARED_CHAINS}
        self.valid = True

    def invalidate(self) -> None:
        self.valid = False


def _shared_keys(services: Mapping[ServiceKey, ServiceRules], ref: ChainRef) -> list[SortKey]:
    return [shared_sort_key(spec) for rules in services.values() for spec in rules.shared.get(ref, ())]


class _Restore:
    """One iptables-restore input, as a list of transactions (table, chains to declare, rule lines)."""

    def __init__(self) -> None:
        self.transactions: list[tuple[str, list[str], list[str]]] = []

    def add(self, table: str, declare: Iterable[str], lines: Iterable[str]) -> None:
        chains, body = list(declare), list(lines)
        if chains or body:
            self.transactions.append((table, chains, body))

    def text(self, merge: bool) -> str:
        """The restore input; `merge` joins consecutive transactions on one table into one (declarations
        first, as the format wants)."""
        merged: list[tuple[str, list[str], list[str]]] = []
        for table, chains, body in self.transactions:
            if merge and merged and merged[-1][0] == table:
                merged[-1][1].extend(chains)
                merged[-1][2].extend(body)
            else:
                merged.append((table, list(chains), list(body)))
        out: list[str] = []
        for table, chains, body in merged:
            out.append(f"*{table}")
            out.extend(f":{chain} - [0:0]" for chain in chains)
            out.extend(body)
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else ""


class RecordMismatch(RuntimeError):
    """The record does not hold a rule it should: never expected; the caller falls back to a full sync."""


def _remove(current: list[SortKey], key: SortKey) -> None:
    index = bisect.bisect_left(current, key)
    if index >= len(current) or current[index] != key:
        raise RecordMismatch(f"shared rule not in the record: {key[1]}")
    current.pop(index)


def full_restore(
    static: StaticRules,
    services: Mapping[ServiceKey, ServiceRules],
    stale_chains: Iterable[str] = (),
    missing_jumps: Iterable[Jump] = (),
    services_per_transaction: int | None = None,
) -> str:
    """Everything of ours, rewritten. `services_per_transaction` None: one transaction per table."""
    restore = _Restore()
    jumps = list(missing_jumps)

    def jump_lines(table: str) -> list[str]:
        # Each is inserted at position 1; in reverse, so they end up in kube-proxy's order.
        return [f"-I {j.chain} 1 {j.spec}" for j in reversed(jumps) if j.table == table]

    def fixed(table: str, chains: Iterable[str]) -> list[str]:
        return [f"-A {chain} {spec}" for chain in chains for spec in static.chains.get((table, chain), ())]

    def shared(table: str, chain: str) -> list[str]:
        keys = sorted(_shared_keys(services, (table, chain)), reverse=True)
        return [f"-A {chain} {spec}" for _, spec in keys]

    filter_chains = [chain for table, chain in static.chains if table == FILTER]
    filter_lines = fixed(FILTER, filter_chains)
    for table, chain in SHARED_CHAINS:
        if table == FILTER:
            filter_lines += shared(FILTER, chain)
    restore.add(FILTER, [*filter_chains, KUBE_PROXY_CANARY], filter_lines + jump_lines(FILTER))

    # The chains every endpoint chain jumps to come first; KUBE-SERVICES and KUBE-NODEPORTS, which make the
    # service chains reachable, last.
    targets = [KUBE_MARK_MASQ, KUBE_POSTROUTING]
    restore.add(NAT, targets, fixed(NAT, targets))
    keys = sorted(services)
    group = services_per_transaction or max(len(keys), 1)
    for start in range(0, len(keys), group):
        chunk = keys[start : start + group]
        # Declared in descending order, and each chain's rules written as in `services`' order per Service.
        names = sorted((name for key in chunk for name in services[key].chains), reverse=True)
        lines = [
            f"-A {chain} {spec}"
            for key in chunk
            for chain, specs in services[key].chains.items()
            for spec in specs
        ]
        restore.add(NAT, names, lines)
    entry = [chain for table, chain in static.chains if table == NAT and chain not in targets]
    lines = fixed(NAT, entry)
    for table, chain in SHARED_CHAINS:
        if table == NAT:
            lines += shared(NAT, chain)
    lines += [f"-A {KUBE_SERVICES} {spec}" for spec in static.services_tail]
    owned = {name for rules in services.values() for name in rules.chains}
    stale = sorted(set(stale_chains) - owned, reverse=True)
    lines += [f"-X {chain}" for chain in stale]
    restore.add(NAT, [*entry, KUBE_PROXY_CANARY, *stale], lines + jump_lines(NAT))
    restore.add(MANGLE, [KUBE_PROXY_CANARY], jump_lines(MANGLE))
    assert set(CANARY_TABLES) == {FILTER, NAT, MANGLE}
    return restore.text(merge=services_per_transaction is None)


def partial_restore(record: Record, updates: Mapping[ServiceKey, ServiceRules | None]) -> str:
    """Only what `updates` changes relative to `record` (None: the Service is gone). Does not change `record`:
    call `apply_partial` once the restore succeeded."""
    restore = _Restore()
    declare: list[str] = []
    lines: list[str] = []
    removed: list[str] = []
    for key in sorted(updates):
        old = record.services.get(key) or ServiceRules()
        new = updates[key] or ServiceRules()
        for chain, specs in new.chains.items():
            if old.chains.get(chain) != specs:
                declare.append(chain)
                lines.extend(f"-A {chain} {spec}" for spec in specs)
        for chain in old.chains:
            if chain not in new.chains:
                declare.append(chain)
                removed.append(chain)
    edits: dict[str, list[str]] = {FILTER: [], NAT: []}
    for ref, (gone, added) in _shared_changes(record, updates).items():
        table, chain = ref
        current = list(record.shared.get(ref, []))
        for rule in gone:
            _remove(current, rule)
            edits[table].append(f"-D {chain} {rule[1]}")
        for rule in sorted(added, reverse=True):
            index = bisect.bisect_left(current, rule)
            current.insert(index, rule)
            edits[table].append(f"-I {chain} {len(current) - index} {rule[1]}")
    restore.add(FILTER, [], edits[FILTER])
    restore.add(NAT, declare, lines + edits[NAT] + [f"-X {chain}" for chain in removed])
    return restore.text(merge=True)


def _shared_changes(
    record: Record, updates: Mapping[ServiceKey, ServiceRules | None]
) -> dict[ChainRef, tuple[list[SortKey], list[SortKey]]]:
    """Per shared chain: the rules to delete and the rules to add (as sort keys)."""
    changes: dict[ChainRef, tuple[list[SortKey], list[SortKey]]] = {}
    for ref in SHARED_CHAINS:
        old: list[str] = []
        new: list[str] = []
        for key, rules in updates.items():
            old.extend((record.services.get(key) or ServiceRules()).shared.get(ref, ()))
            new.extend((rules or ServiceRules()).shared.get(ref, ()))
        gone = _minus(old, new)
        added = _minus(new, old)
        if gone or added:
            changes[ref] = ([shared_sort_key(s) for s in gone], [shared_sort_key(s) for s in added])
    return changes


def _minus(left: list[str], right: list[str]) -> list[str]:
    """Multiset difference, in `left`'s order."""
    remaining: dict[str, int] = {}
    for item in right:
        remaining[item] = remaining.get(item, 0) + 1
    out = []
    for item in left:
        if remaining.get(item, 0):
            remaining[item] -= 1
        else:
            out.append(item)
    return out


def apply_partial(record: Record, updates: Mapping[ServiceKey, ServiceRules | None]) -> None:
    """Record a successful partial sync of `updates`."""
    for ref, (gone, added) in _shared_changes(record, updates).items():
        current = record.shared.setdefault(ref, [])
        for rule in gone:
            _remove(current, rule)
        for rule in added:
            bisect.insort(current, rule)
    for key, rules in updates.items():
        if rules is None or not (rules.chains or rules.shared):
            record.services.pop(key, None)
        else:
            record.services[key] = rules
