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
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from dataplane.iptables.rules import (
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


def digest(specs: Iterable[str]) -> bytes:
    """A chain's rules, as the record keeps them: enough to know whether they changed, in 8 bytes."""
    return hashlib.blake2b("\n".join(specs).encode(), digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class Written:
    """What the record keeps of one Service: each owned chain's name and digest (packed into one bytes
    object: at 10,000 Services a dict of strings per Service costs ~10 MB more), and its shared rules as
    text (the text is what `-D` needs)."""

    packed: bytes  # NUL-terminated name, then the 8-byte digest, per chain
    shared: Mapping[ChainRef, tuple[str, ...]]

    @classmethod
    def of(cls, rules: ServiceRules) -> Written:
        packed = b"".join(name.encode() + b"\0" + digest(specs) for name, specs in rules.chains.items())
        return cls(packed, dict(rules.shared))

    @property
    def chains(self) -> dict[str, bytes]:
        """Chain name -> digest."""
        found = {}
        start = 0
        while start < len(self.packed):
            end = self.packed.index(b"\0", start)
            found[self.packed[start:end].decode()] = self.packed[end + 1 : end + 9]
            start = end + 9
        return found


NOTHING = Written(b"", {})


@dataclass
class Record:
    """What this process wrote to one family's tables: the only source of truth for partial syncs (the kernel
    is never listed to find it). `valid` is False until a full sync succeeds, and again after any failure."""

    static: StaticRules | None = None
    services: dict[ServiceKey, Written] = field(default_factory=dict)
    # Each shared chain's rules as sort keys, ascending (the chain holds them in the reverse order).
    shared: dict[ChainRef, list[SortKey]] = field(default_factory=dict)
    valid: bool = False

    def chain_names(self) -> set[str]:
        return {name for written in self.services.values() for name in written.chains}

    def reset(self, static: StaticRules, services: Mapping[ServiceKey, ServiceRules | Written]) -> None:
        """After a successful full sync of exactly these rules."""
        self.static = static
        self.services = {k: v if isinstance(v, Written) else Written.of(v) for k, v in services.items()}
        self.shared = {
            ref: sorted(
                shared_sort_key(spec) for w in self.services.values() for spec in w.shared.get(ref, ())
            )
            for ref in SHARED_CHAINS
        }
        self.valid = True

    def invalidate(self) -> None:
        self.valid = False


class _Writer:
    """Restore input as it is produced: `begin`/`end` frame a transaction; in merged mode one per table."""

    def __init__(self, merge: bool) -> None:
        self.merge = merge
        self.open: str | None = None

    def begin(self, table: str) -> str:
        if self.open == table and self.merge:
            return ""
        head = self.end() + f"*{table}\n"
        self.open = table
        return head

    def end(self) -> str:
        if self.open is None:
            return ""
        self.open = None
        return "COMMIT\n"


def _lines(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)


def full_restore_chunks(
    static: StaticRules,
    services: Iterable[tuple[ServiceKey, ServiceRules]],
    stale_chains: Iterable[str] = (),
    missing_jumps: Iterable[Jump] = (),
    services_per_transaction: int | None = None,
) -> Iterator[str]:
    """Everything of ours, rewritten, as chunks of restore input; `services` is consumed as it goes (it may
    render lazily), in its order. `services_per_transaction` None: one transaction per table."""
    jumps = list(missing_jumps)
    writer = _Writer(merge=services_per_transaction is None)
    shared: dict[ChainRef, list[SortKey]] = {ref: [] for ref in SHARED_CHAINS}
    owned: set[str] = set()

    def jump_lines(table: str) -> list[str]:
        # Each is inserted at position 1; in reverse, so they end up in kube-proxy's order.
        return [f"-I {j.chain} 1 {j.spec}" for j in reversed(jumps) if j.table == table]

    def fixed(table: str, chains: Iterable[str]) -> list[str]:
        return [f"-A {chain} {spec}" for chain in chains for spec in static.chains.get((table, chain), ())]

    def declare(chains: Iterable[str]) -> list[str]:
        return [f":{chain} - [0:0]" for chain in chains]

    def write_group(group: list[tuple[ServiceKey, ServiceRules]]) -> str:
        # Declared in descending order (cheapest for iptables-nft), each chain then filled.
        names = sorted((name for _, rules in group for name in rules.chains), reverse=True)
        owned.update(names)
        body = declare(names)
        for _, rules in group:
            for ref, specs in rules.shared.items():
                shared[ref].extend(shared_sort_key(spec) for spec in specs)
            body += [f"-A {chain} {spec}" for chain, specs in rules.chains.items() for spec in specs]
        return writer.begin(NAT) + _lines(body)

    # The chains every endpoint chain jumps to first; KUBE-SERVICES and KUBE-NODEPORTS, which make the
    # service chains reachable, last; the filter table after the nat table (it needs every Service's rules).
    targets = [KUBE_MARK_MASQ, KUBE_POSTROUTING]
    yield writer.begin(NAT) + _lines(declare(targets) + fixed(NAT, targets))
    size = services_per_transaction or 64
    group: list[tuple[ServiceKey, ServiceRules]] = []
    for item in services:
        group.append(item)
        if len(group) >= size:
            yield write_group(group)
            if services_per_transaction is not None:
                yield writer.end()
            group = []
    if group:
        yield write_group(group)
        if services_per_transaction is not None:
            yield writer.end()

    def shared_lines(table: str) -> list[str]:
        out = []
        for ref_table, chain in SHARED_CHAINS:
            if ref_table == table:
                out += [f"-A {chain} {spec}" for _, spec in sorted(shared[(table, chain)], reverse=True)]
        return out

    entry = [chain for table, chain in static.chains if table == NAT and chain not in targets]
    stale = sorted(set(stale_chains) - owned, reverse=True)
    lines = declare([*entry, KUBE_PROXY_CANARY, *stale]) + fixed(NAT, entry) + shared_lines(NAT)
    lines += [f"-A {KUBE_SERVICES} {spec}" for spec in static.services_tail]
    lines += [f"-X {chain}" for chain in stale] + jump_lines(NAT)
    yield writer.begin(NAT) + _lines(lines)
    filter_chains = [chain for table, chain in static.chains if table == FILTER]
    lines = declare([*filter_chains, KUBE_PROXY_CANARY]) + fixed(FILTER, filter_chains) + shared_lines(FILTER)
    yield writer.begin(FILTER) + _lines(lines + jump_lines(FILTER))
    yield writer.begin(MANGLE) + _lines(declare([KUBE_PROXY_CANARY]) + jump_lines(MANGLE))
    yield writer.end()


def full_restore(
    static: StaticRules,
    services: Mapping[ServiceKey, ServiceRules],
    stale_chains: Iterable[str] = (),
    missing_jumps: Iterable[Jump] = (),
    services_per_transaction: int | None = None,
) -> str:
    """full_restore_chunks of a whole rendered snapshot (Services in key order), as one text."""
    items = [(key, services[key]) for key in sorted(services)]
    return "".join(full_restore_chunks(static, items, stale_chains, missing_jumps, services_per_transaction))


class RecordMismatch(RuntimeError):
    """The record does not hold a rule it should: never expected; the caller falls back to a full sync."""


def _remove(current: list[SortKey], key: SortKey) -> None:
    index = bisect.bisect_left(current, key)
    if index >= len(current) or current[index] != key:
        raise RecordMismatch(f"shared rule not in the record: {key[1]}")
    current.pop(index)


def partial_restore(record: Record, updates: Mapping[ServiceKey, ServiceRules | None]) -> str:
    """Only what `updates` changes relative to `record` (None: the Service is gone). Does not change `record`:
    call `apply_partial` once the restore succeeded."""
    declare: list[str] = []
    lines: list[str] = []
    removed: list[str] = []
    for key in sorted(updates):
        old = (record.services.get(key) or NOTHING).chains
        new = updates[key] or ServiceRules()
        for chain, specs in new.chains.items():
            if old.get(chain) != digest(specs):
                declare.append(chain)
                lines.extend(f"-A {chain} {spec}" for spec in specs)
        for chain in old:
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
    text = ""
    if edits[FILTER]:
        text += f"*{FILTER}\n" + _lines(edits[FILTER]) + "COMMIT\n"
    nat = (
        [f":{chain} - [0:0]" for chain in declare] + lines + edits[NAT] + [f"-X {chain}" for chain in removed]
    )
    if nat:
        text += f"*{NAT}\n" + _lines(nat) + "COMMIT\n"
    return text


def _shared_changes(
    record: Record, updates: Mapping[ServiceKey, ServiceRules | None]
) -> dict[ChainRef, tuple[list[SortKey], list[SortKey]]]:
    """Per shared chain: the rules to delete and the rules to add (as sort keys)."""
    changes: dict[ChainRef, tuple[list[SortKey], list[SortKey]]] = {}
    for ref in SHARED_CHAINS:
        old: list[str] = []
        new: list[str] = []
        for key, rules in updates.items():
            old.extend((record.services.get(key) or NOTHING).shared.get(ref, ()))
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
            record.services[key] = Written.of(rules)
