"""nftables mode: the Backend that writes ruleset.py's table with transaction.py's inputs, per address family.

It keeps a Record per family of what it wrote. A partial sync renders only the changed Services and sends the
difference; a full sync rewrites the table in one transaction, and happens at start, after any failure, when
the node's addresses change, when element comments are switched on or off (above 1,000 endpoints, as
kube-proxy drops its rule comments), when our table is gone, and when the sync loop asks for one.

Before a full sync it reads the names of our table's chains and sets over netlink (never their elements), so
what an earlier run left and this one no longer wants is deleted; the kernel is never read to find our
elements. Full syncs go through an `nft -f` child, partial syncs through libnftables in-process (kernel.py
says why).
"""

from __future__ import annotations

import logging
from collections.abc import Set
from dataclasses import dataclass, field

from dataplane.backend import NodeNetwork, RenderConfig, SyncError, SyncReport
from dataplane.metrics import cpu_seconds
from dataplane.model import ServiceKey
from dataplane.nftables.kernel import Netlink, Nft, NftError, NftProcess, open_nft
from dataplane.nftables.ruleset import SERVICES, TABLE, count_endpoints
from dataplane.nftables.transaction import Record, plan_full, plan_partial
from dataplane.tracker import Snapshot

log = logging.getLogger("dataplane.nftables")

LARGE_CLUSTER_ENDPOINTS = 1000  # kube-proxy's largeClusterEndpointsThreshold: above it, no comments
FAMILIES = {4: "ip", 6: "ip6"}


@dataclass
class _Family:
    family: int
    record: Record = field(default_factory=Record)
    recreate: bool = False  # the last full sync failed: the next one deletes the table and writes it anew
    reader: Netlink | None = None

    @property
    def name(self) -> str:
        return FAMILIES[self.family]

    def netlink(self) -> Netlink:
        if self.reader is None:
            self.reader = Netlink(self.name)
        return self.reader


class NftablesBackend:
    mode = "nftables"

    def __init__(
        self,
        node: NodeNetwork,
        families: tuple[int, ...] = (4, 6),
        *,
        full_nft: Nft | None = None,
        partial_nft: Nft | None = None,
        masquerade_bit: int = 14,
        random_fully: bool = True,
        drop_invalid: bool = True,
    ) -> None:
        self.node = node
        self.full_nft = full_nft if full_nft is not None else NftProcess()
        self.partial_nft = partial_nft if partial_nft is not None else open_nft()
        self.families = {family: _Family(family) for family in families}
        self.base = RenderConfig(
            family=4,
            masquerade_mark=1 << masquerade_bit,
            random_fully=random_fully,
            drop_invalid=drop_invalid,
        )
        self._comments = True
        log.info(
            "event=nftables_transport full_sync=%s partial_sync=%s", self.full_nft.name, self.partial_nft.name
        )

    # ---- Backend --------------------------------------------------------------------------------------

    def set_node(self, node: NodeNetwork) -> None:
        self.node = node  # the configs differ from the records' now, so the next sync is a full one

    def flushed(self) -> bool:
        """Our dispatch rules are gone (table deleted or flushed behind our back): sync everything again."""
        for state in self.families.values():
            if not state.record.valid:
                continue
            try:
                present = state.netlink().rules(SERVICES)
            except NftError as exc:
                log.warning("event=canary_check_failed family=%s error=%r", state.name, str(exc))
                return True
            if not present:
                log.warning("event=canary_gone family=%s: our rules were removed behind our back", state.name)
                return True
        return False

    def sync(self, snapshot: Snapshot, changed: Set[ServiceKey] | None) -> SyncReport:
        cpu = cpu_seconds()
        self._comments = count_endpoints(snapshot.services.values()) <= LARGE_CLUSTER_ENDPOINTS
        full = changed is None
        details = []
        for family, state in self.families.items():
            config = self._config(family)
            family_full = full or not state.record.valid or state.record.config != config
            try:
                if family_full:
                    count = self._full(state, config, snapshot)
                else:
                    assert changed is not None
                    count = self._partial(state, snapshot, changed)
            except (NftError, OSError) as exc:
                state.record.invalidate()
                if family_full:
                    state.recreate = True
                raise SyncError(f"ipv{family}: {exc}") from exc
            full = full or family_full
            details.append(f"ipv{family}={'full' if family_full else 'partial'}:{count}")
        return SyncReport(
            full=full,
            services=len(snapshot.services) if full else len(changed or ()),
            detail=f"comments={self._comments} {' '.join(details)} cpu={cpu_seconds() - cpu:.3f}",
        )

    def cleanup(self) -> None:
        """Delete our tables (--cleanup, and leaving nftables mode). Absent tables are no error."""
        for state in self.families.values():
            cleanup(self.full_nft, state.name)
            state.record = Record()

    # ---- the work -------------------------------------------------------------------------------------

    def _config(self, family: int) -> RenderConfig:
        return self.base.for_node(self.node, family, self._comments)

    def _full(self, state: _Family, config: RenderConfig, snapshot: Snapshot) -> int:
        existing = None if state.recreate else state.netlink().objects()
        plan = plan_full(state.record, config, snapshot.services, existing, recreate=state.recreate)
        if state.recreate:
            log.warning("event=table_recreated family=%s: the last full sync failed", state.name)
        self.full_nft.run_parts(plan.parts)
        plan.commit()
        state.recreate = False
        return plan.services

    def _partial(self, state: _Family, snapshot: Snapshot, changed: Set[ServiceKey]) -> int:
        plan = plan_partial(state.record, {key: snapshot.services.get(key) for key in changed})
        if plan.text:
            self.partial_nft.run(plan.text)
        plan.commit()
        return plan.services


def cleanup(nft: Nft, family: str) -> None:
    """Delete one family's table, if there is one."""
    nft.run(f"add table {family} {TABLE}\ndelete table {family} {TABLE}\n")
