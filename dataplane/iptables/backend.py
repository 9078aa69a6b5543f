"""iptables mode: the Backend that writes rules.py's rules with restore.py's inputs, per address family.

It keeps a Record per family of exactly what it wrote. A partial sync renders only the changed Services and
writes the difference; a full sync renders everything and rewrites it, and happens at start, after any
failure, when the node's addresses change, when the rule comments are switched on or off (above 1,000
endpoints, as kube-proxy), when the canary chains are gone, and when the sync loop asks for one.

At start it lists the names (not the rules) of the nat chains once, so the first full sync deletes the service
chains an earlier run left for Services that are gone; after that the kernel is never read to find our rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field

from dataplane.backend import NodeNetwork, RenderConfig, SyncError, SyncReport
from dataplane.iptables.kernel import Iptables, IptablesError
from dataplane.iptables.restore import (
    Record,
    RecordMismatch,
    Written,
    apply_partial,
    full_restore_chunks,
    partial_restore,
)
from dataplane.iptables.rules import (
    CANARY_TABLES,
    JUMPS,
    KUBE_PROXY_CANARY,
    NAT,
    SERVICE_CHAIN_PREFIXES,
    Jump,
    ServiceRules,
    render_service,
    render_static,
)
from dataplane.metrics import cpu_seconds
from dataplane.model import ServiceInfo, ServiceKey
from dataplane.tracker import Snapshot

log = logging.getLogger("dataplane.iptables")

LARGE_CLUSTER_ENDPOINTS = (
    1000  # kube-proxy's largeClusterEndpointsThreshold: above it, no per-endpoint comments
)
# Services per transaction in a full sync with iptables-nft (docs/benchmarks.md has the measurements).
NFT_SERVICES_PER_TRANSACTION = 50


def missing_jumps(existing: dict[tuple[str, str], list[str]]) -> list[Jump]:
    """The jumps from built-in chains that `iptables -S` of those chains does not show."""
    missing = []
    for jump in JUMPS:
        rules = existing.get((jump.table, jump.chain), [])
        if not any(rule.endswith(f" -j {jump.target}") and jump.comment in rule for rule in rules):
            missing.append(jump)
    return missing


@dataclass
class _Family:
    iptables: Iptables
    record: Record = field(default_factory=Record)
    config: RenderConfig | None = None  # what the record was rendered with
    leftovers: set[str] | None = None  # service chains found at start; None until listed


class IptablesBackend:
    mode = "iptables"

    def __init__(
        self,
        node: NodeNetwork,
        variant: str,
        families: tuple[int, ...] = (4, 6),
        *,
        masquerade_bit: int = 14,
        random_fully: bool = True,
        drop_invalid: bool = True,
        services_per_transaction: int | None = None,
    ) -> None:
        self.node = node
        self.variant = variant
        self.families = {family: _Family(Iptables(family, variant)) for family in families}
        self.base = RenderConfig(
            family=4,
            masquerade_mark=1 << masquerade_bit,
            random_fully=random_fully,
            drop_invalid=drop_invalid,
        )
        if services_per_transaction is None and variant == "nft":
            services_per_transaction = NFT_SERVICES_PER_TRANSACTION
        self.services_per_transaction = services_per_transaction
        self._comments = True

    # ---- Backend --------------------------------------------------------------------------------------

    def set_node(self, node: NodeNetwork) -> None:
        self.node = node  # the configs differ from the records' now, so the next sync is a full one

    def flushed(self) -> bool:
        for state in self.families.values():
            if not state.record.valid:
                continue
            for table in CANARY_TABLES:
                try:
                    if not state.iptables.chain_exists(table, KUBE_PROXY_CANARY):
                        log.warning(
                            "event=canary_gone family=ipv%d table=%s: rules were flushed behind our back",
                            state.iptables.family,
                            table,
                        )
                        return True
                except IptablesError as exc:
                    log.warning("event=canary_check_failed error=%s", exc)
                    return True
        return False

    def sync(self, snapshot: Snapshot, changed: Set[ServiceKey] | None) -> SyncReport:
        cpu = cpu_seconds()
        endpoints = sum(len(eps) for info in snapshot.services.values() for eps in info.endpoints)
        self._comments = endpoints <= LARGE_CLUSTER_ENDPOINTS
        full = changed is None
        details = []
        for family, state in self.families.items():
            config = self._config(family)
            family_full = full or not state.record.valid or state.config != config
            try:
                if family_full:
                    count = self._full(state, config, snapshot.services)
                else:
                    assert changed is not None
                    count = self._partial(state, config, snapshot.services, changed)
            except (IptablesError, RecordMismatch, OSError) as exc:
                state.record.invalidate()
                raise SyncError(f"ipv{family}: {exc}") from exc
            full = full or family_full
            details.append(f"ipv{family}={'full' if family_full else 'partial'}:{count}")
        return SyncReport(
            full=full,
            services=len(snapshot.services) if full else len(changed or ()),
            detail=f"backend={self.variant} comments={self._comments} {' '.join(details)}"
            f" cpu={cpu_seconds() - cpu:.3f}",
        )

    # ---- the work -------------------------------------------------------------------------------------

    def _config(self, family: int) -> RenderConfig:
        return self.base.for_node(self.node, family, self._comments)

    def _render(self, info: ServiceInfo | None, config: RenderConfig) -> ServiceRules | None:
        if info is None:
            return None
        rules = render_service(info, config)
        return rules if rules.chains or rules.shared else None

    def _full(self, state: _Family, config: RenderConfig, services: Mapping[ServiceKey, ServiceInfo]) -> int:
        iptables = state.iptables
        if state.leftovers is None:
            state.leftovers = {
                name for name in iptables.chain_names(NAT) if name.startswith(SERVICE_CHAIN_PREFIXES)
            }
            if state.leftovers:
                log.info(
                    "event=adopting family=ipv%d service_chains=%d: rules of an earlier run stay in place",
                    iptables.family,
                    len(state.leftovers),
                )
        written: dict[ServiceKey, Written] = {}

        def rendered() -> Iterator[tuple[ServiceKey, ServiceRules]]:
            # Rendered as the restore input is written, so only the record's digests stay in memory.
            for key in sorted(services):
                rules = self._render(services[key], config)
                if rules is not None:
                    written[key] = Written.of(rules)
                    yield key, rules

        builtins = sorted({(jump.table, jump.chain) for jump in JUMPS})
        existing = {(table, chain): iptables.list_chain(table, chain) or [] for table, chain in builtins}
        stale = state.leftovers | state.record.chain_names()
        static = render_static(config)
        state.record.invalidate()
        iptables.restore_chunks(
            full_restore_chunks(
                static, rendered(), stale, missing_jumps(existing), self.services_per_transaction
            )
        )
        state.record.reset(static, written)
        state.config = config
        state.leftovers = set()
        return len(written)

    def _partial(
        self,
        state: _Family,
        config: RenderConfig,
        services: Mapping[ServiceKey, ServiceInfo],
        changed: Set[ServiceKey],
    ) -> int:
        updates = {key: self._render(services.get(key), config) for key in changed}
        text = partial_restore(state.record, updates)
        if text:
            state.iptables.restore(text)
        apply_partial(state.record, updates)
        return len(updates)
