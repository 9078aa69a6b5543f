"""nft transactions for full and partial syncs, and the record of what was written (pure).

Each sync is one `nft -f` input, which the kernel applies as one transaction: a packet sees the old ruleset or
the new one, never half of it.

- A full sync writes the whole table. When the table may already exist (a restart, a periodic resync, a retry
  after an error) it first flushes every rule and every non-dynamic set of ours and deletes our chains and
  sets that are no longer wanted, all in the same transaction; the affinity sets, which the kernel fills,
  are kept, so clients keep their endpoints.
- A partial sync sends only what the changed Services change: elements deleted and added, chains and sets of
  their own created or deleted, shared `endpoints-N` chains created when first used and deleted when last
  released. It costs the same at 10 Services as at 10,000.

The record keeps, per Service, the ServiceInfo it was written from (the same objects as the tracker's
snapshot, so it costs little memory): what was written for a Service is its rendering, computed again when
needed. It also keeps who claims each destination and how many Services use each shared object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dataplane.backend import RenderConfig
from dataplane.model import ServiceInfo, ServiceKey
from dataplane.nftables.ruleset import (
    COMMENTED,
    TABLE,
    TABLE_COMMENT,
    Contribution,
    Destination,
    ElementKey,
    Static,
    endpoints_objects,
    is_endpoints_name,
    nft_family,
    render_service,
    render_static,
    shared_element,
)

Ref = tuple[str, str]


@dataclass(frozen=True, slots=True)
class KernelObjects:
    """The names of the chains, sets and maps in our table before a full sync (listed without elements)."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()


@dataclass
class Record:
    """What this process wrote to one family's table: the only source of truth for partial syncs (the kernel
    is never listed to find it). `valid` is False until a full sync succeeds, and again after any failure."""

    config: RenderConfig | None = None
    services: dict[ServiceKey, ServiceInfo] = field(default_factory=dict)
    claims: dict[Destination, list[ServiceKey]] = field(default_factory=dict)  # owners, sorted; [0] wins
    refs: Counter[Ref] = field(default_factory=Counter)
    chains: set[str] = field(default_factory=set)  # chains of Services (affinity) and shared chains
    sets: set[str] = field(default_factory=set)  # sets of Services (affinity)
    valid: bool = False

    def invalidate(self) -> None:
        self.valid = False

    def contribution(self, key: ServiceKey) -> Contribution:
        assert self.config is not None
        info = self.services.get(key)
        return render_service(info, self.config) if info is not None else Contribution()


@dataclass(frozen=True, slots=True)
class Plan:
    """One transaction's input, and how to record it once the kernel took it.

    `parts` are pieces of the input in order. A full sync's element lists are compact byte buffers, one per
    set (6 MB at 10,000 Services × 10 endpoints, where a list of strings would take three times that), sent
    to nft piece by piece without being joined."""

    parts: Sequence[bytes | bytearray]
    commit: Callable[[], None]
    services: int  # Services rendered into it

    @property
    def text(self) -> str:
        return b"".join(self.parts).decode()


class _Text:
    """Commands of one transaction on one table."""

    def __init__(self, config: RenderConfig) -> None:
        self.prefix = f"{nft_family(config)} {TABLE}"
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def elements(self, verb: str, set_name: str, items: Iterable[str]) -> None:
        body = ", ".join(items)
        if body:
            self.lines.append(f"{verb} element {self.prefix} {set_name} {{ {body} }}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""


def element_text(element: ElementKey, value: str | None, comment: str | None) -> str:
    set_name, key = element
    if comment and set_name in COMMENTED:
        key = f'{key} comment "{comment}"'
    return key if value is None else f"{key} : {value}"


def _chain_block(name: str, rules: Iterable[str]) -> str:
    body = "\n".join(f"\t\t{rule}" for rule in rules)
    return f"\tchain {name} {{\n{body}\n\t}}" if body else f"\tchain {name} {{\n\t}}"


def _add_chain(out: _Text, name: str, rules: Iterable[str]) -> None:
    out.add(f"add chain {out.prefix} {name}")
    for rule in rules:
        out.add(f"add rule {out.prefix} {name} {rule}")


def plan_full(
    record: Record,
    config: RenderConfig,
    services: Mapping[ServiceKey, ServiceInfo],
    existing: KernelObjects | None,
    recreate: bool = False,
) -> Plan:
    """Everything of ours, written in one transaction. `existing` None: the table is not there. `recreate`:
    delete the table and write it anew (forgets affinity; the way out when the table holds something the
    clearing cannot fix, like a base chain an older version declared differently)."""
    static = render_static(config)
    elements: dict[str, _Elements] = {spec.name: _Elements() for spec in static.sets}
    for set_name, fixed in static.elements.items():
        for item in fixed:
            elements[set_name].add(item)
    claims: dict[Destination, list[ServiceKey]] = {}
    refs: Counter[Ref] = Counter()
    own_chains: dict[str, tuple[str, ...]] = {}
    own_sets: dict[str, str] = {}
    kept: dict[ServiceKey, ServiceInfo] = {}
    for key in sorted(services):
        info = services[key]
        contribution = render_service(info, config)
        if contribution.empty:
            continue
        kept[key] = info
        for destination, items in contribution.destinations.items():
            owners = claims.get(destination)
            if owners is not None:
                owners.append(key)
                continue  # an earlier Service owns it
            claims[destination] = [key]
            comment = contribution.comments.get(destination) if config.comments else None
            for element, value in items.items():
                buffer = elements.get(element[0])
                if buffer is None:
                    buffer = elements[element[0]] = _Elements()
                buffer.add(element_text(element, value, comment))
        refs.update(contribution.refs)
        own_chains.update(contribution.chains)
        own_sets.update(contribution.sets)
    shared_chains: dict[str, tuple[str, ...]] = {}
    shared_maps: dict[str, str] = {}
    for ref in sorted(refs):
        if ref[0] == "endpoints":
            shared_maps[ref[1]], shared_chains[ref[1]] = endpoints_objects(ref[1], config)
            continue
        shared = shared_element(ref)
        if shared is not None:
            elements[shared[0]].add(shared[1])
    chains = {**static.chains, **shared_chains, **dict(sorted(own_chains.items()))}

    out = _Text(config)
    if recreate:
        out.add(f"add table {out.prefix}")
        out.add(f"delete table {out.prefix}")
    elif existing is not None:
        _clear(out, static, chains, own_sets, existing)
    parts = [out.text().encode(), *_table_block(config, static, elements, shared_maps, own_sets, chains)]

    def commit() -> None:
        record.config = config
        record.services = kept
        record.claims = claims
        record.refs = refs
        record.chains = set(shared_chains) | set(own_chains)
        record.sets = set(own_sets)
        record.valid = True

    return Plan(parts, commit, len(services))


class _Elements:
    """One set's elements as nft text (`a, b, c`), in a byte buffer."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def add(self, item: str) -> None:
        if self.buffer:
            self.buffer += b", "
        self.buffer += item.encode()


def _clear(
    out: _Text,
    static: Static,
    chains: Mapping[str, tuple[str, ...]],
    own_sets: Mapping[str, str],
    existing: KernelObjects,
) -> None:
    """Empty the existing table of everything the new ruleset rewrites, and drop what it no longer has. The
    endpoints-N maps are deleted whether still wanted or not, and declared again with the table: their rules
    could not be added back to the kernel's copies (ruleset.py)."""
    out.add(f"flush table {out.prefix}")
    for spec in static.sets:
        if spec.name in existing.sets | existing.maps:
            out.add(f"flush {'map' if spec.name in existing.maps else 'set'} {out.prefix} {spec.name}")
    for name in sorted(existing.chains - set(chains)):
        out.add(f"delete chain {out.prefix} {name}")
    wanted = {spec.name for spec in static.sets} | set(own_sets)
    for name in sorted(existing.sets - wanted):
        out.add(f"delete set {out.prefix} {name}")
    for name in sorted(existing.maps):
        if name not in wanted or is_endpoints_name(name):
            out.add(f"delete map {out.prefix} {name}")


def _table_block(
    config: RenderConfig,
    static: Static,
    elements: Mapping[str, _Elements],
    shared_maps: Mapping[str, str],
    own_sets: Mapping[str, str],
    chains: Mapping[str, tuple[str, ...]],
) -> list[bytes | bytearray]:
    parts: list[bytes | bytearray] = []
    head = [f"table {nft_family(config)} {TABLE} {{", f'\tcomment "{TABLE_COMMENT}"']
    declarations = [(spec.name, spec.declaration) for spec in static.sets] + list(shared_maps.items())
    for name, declaration in declarations:
        kind = "map" if " : " in declaration else "set"
        head.append(f"\t{kind} {name} {{\n\t\t{declaration}")
        items = elements.get(name)
        if items is not None and items.buffer:
            head.append("\t\telements = { ")
            parts += ["\n".join(head).encode(), items.buffer]
            head = [" }"]
        head.append("\t}")
    for name, declaration in sorted(own_sets.items()):
        head.append(f"\tset {name} {{\n\t\t{declaration}\n\t}}")
    for name, rules in chains.items():
        head.append(_chain_block(name, rules))
    head.append("}\n")
    parts.append("\n".join(head).encode())
    return parts


def plan_partial(record: Record, updates: Mapping[ServiceKey, ServiceInfo | None]) -> Plan:
    """Only what `updates` changes relative to `record` (None: the Service is gone). Does not change
    `record` until `commit` is called."""
    config = record.config
    assert config is not None and record.valid
    old = {key: record.contribution(key) for key in updates}
    new = {
        key: render_service(info, config) if info is not None else Contribution()
        for key, info in updates.items()
    }

    def current(key: ServiceKey) -> Contribution:
        return new[key] if key in new else record.contribution(key)

    def previous(key: ServiceKey) -> Contribution:
        return old[key] if key in old else record.contribution(key)

    out = _Text(config)
    deletes: dict[str, list[str]] = {}
    adds: dict[str, list[str]] = {}

    # Destinations: who owns each one before and after, and the difference in its elements.
    claims: dict[Destination, list[ServiceKey]] = {}
    touched = {d for contribution in (*old.values(), *new.values()) for d in contribution.destinations}
    for destination in sorted(touched):
        before = record.claims.get(destination, [])
        after = sorted(
            {key for key in before if key not in updates}
            | {key for key, contribution in new.items() if destination in contribution.destinations}
        )
        claims[destination] = after
        old_items: Mapping[ElementKey, str | None] = {}
        new_items: Mapping[ElementKey, str | None] = {}
        old_comment = new_comment = None
        if before:
            prior = previous(before[0])
            old_items = prior.destinations.get(destination, {})
            old_comment = prior.comments.get(destination)
        if after:
            later = current(after[0])
            new_items = later.destinations.get(destination, {})
            new_comment = later.comments.get(destination)
        recomment = config.comments and old_comment != new_comment
        for element, value in old_items.items():
            changed = element not in new_items or new_items[element] != value
            if changed or (recomment and element[0] in COMMENTED):
                deletes.setdefault(element[0], []).append(element[1])
        for element, value in new_items.items():
            changed = element not in old_items or old_items[element] != value
            if changed or (recomment and element[0] in COMMENTED):
                comment = new_comment if config.comments else None
                adds.setdefault(element[0], []).append(element_text(element, value, comment))

    # Shared objects: created when first referenced, deleted when last released.
    refs = Counter(record.refs)
    for contribution in old.values():
        refs.subtract(contribution.refs)
    for contribution in new.values():
        refs.update(contribution.refs)
    refs = +refs
    created = sorted(set(refs) - set(record.refs))
    released = sorted(set(record.refs) - set(refs))

    # Chains and sets of the updated Services.
    old_chains = {name: rules for c in old.values() for name, rules in c.chains.items()}
    new_chains = {name: rules for c in new.values() for name, rules in c.chains.items()}
    old_sets = {name: decl for c in old.values() for name, decl in c.sets.items()}
    new_sets = {name: decl for c in new.values() for name, decl in c.sets.items()}

    for name in sorted(set(new_sets) - set(old_sets)):  # a name stands for one declaration (see affinity_set)
        out.add(f"add set {out.prefix} {name} {{ {new_sets[name]} }}")
    for ref in created:
        if ref[0] == "endpoints":
            declaration, rules = endpoints_objects(ref[1], config)
            out.add(f"add map {out.prefix} {ref[1]} {{ {declaration}; }}")
            _add_chain(out, ref[1], rules)
        shared = shared_element(ref)
        if shared is not None:
            adds.setdefault(shared[0], []).append(shared[1])
    for name in sorted(new_chains):
        if name not in old_chains:
            _add_chain(out, name, new_chains[name])
        elif old_chains[name] != new_chains[name]:
            out.add(f"flush chain {out.prefix} {name}")
            for rule in new_chains[name]:
                out.add(f"add rule {out.prefix} {name} {rule}")
    for ref in released:
        shared = shared_element(ref)
        if shared is not None:
            deletes.setdefault(shared[0], []).append(shared[1])
    for set_name in sorted(deletes):
        out.elements("delete", set_name, deletes[set_name])
    for set_name in sorted(adds):
        out.elements("add", set_name, adds[set_name])
    gone_maps = sorted(ref[1] for ref in released if ref[0] == "endpoints")
    gone_chains = sorted({name for name in old_chains if name not in new_chains} | set(gone_maps))
    for name in gone_chains:
        out.add(f"flush chain {out.prefix} {name}")
    for name in gone_chains:
        out.add(f"delete chain {out.prefix} {name}")
    for name in gone_maps:
        out.add(f"delete map {out.prefix} {name}")
    for name in sorted(set(old_sets) - set(new_sets)):
        out.add(f"delete set {out.prefix} {name}")

    def commit() -> None:
        for destination, owners in claims.items():
            if owners:
                record.claims[destination] = owners
            else:
                record.claims.pop(destination, None)
        for key, info in updates.items():
            if info is None or new[key].empty:
                record.services.pop(key, None)
            else:
                record.services[key] = info
        record.refs = refs
        record.chains -= set(gone_chains)
        record.chains |= set(new_chains) | {ref[1] for ref in created if ref[0] == "endpoints"}
        record.sets -= set(old_sets) - set(new_sets)
        record.sets |= set(new_sets)

    return Plan([out.text().encode()], commit, len(updates))
