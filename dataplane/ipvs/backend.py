"""IPVS mode: the Backend that keeps render.py's objects in the kernel with plan.py's operations.

At start it sets the sysctls IPVS mode needs and strictARP (logged), creates kube-ipvs0 and the ipsets, and
its first full sync reads back what an earlier run left (virtual servers, real servers, addresses, set
entries) so that it changes only the difference: established connections never notice a restart. After that
the kernel is read only to see whether terminating real servers have drained, and after a failure.

A partial sync renders the changed Services and sends their difference over netlink in one batch per
protocol; the iptables rules are constant and written by full syncs only. A thread deletes terminating real
servers once their connections drained or their grace timeout passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Set
from dataclasses import dataclass

from dataplane.backend import NodeNetwork, SyncError, SyncReport
from dataplane.iptables.kernel import Iptables, IptablesError
from dataplane.ipvs.kernel import STRICT_ARP, SYSCTLS, IpvsError, Kernel, check_scheduler
from dataplane.ipvs.plan import (
    Drain,
    GracePolicy,
    KernelView,
    Plan,
    Record,
    plan_drained,
    plan_full,
    plan_partial,
)
from dataplane.ipvs.render import IpvsConfig, ServiceObjects, VirtualServer, node_ports, render_service
from dataplane.ipvs.rules import JUMPS, KUBE_PROXY_CANARY, MANGLE, RulesConfig, render_rules, restore_input
from dataplane.metrics import cpu_seconds
from dataplane.model import ServiceKey
from dataplane.tracker import Snapshot

log = logging.getLogger("dataplane.ipvs")

GRACE_TIMEOUT = 60.0  # seconds a removed TCP/SCTP real server keeps its connections at most
GRACE_CHECK_INTERVAL = 5.0  # seconds between checks of terminating real servers


@dataclass(frozen=True, slots=True)
class Options:
    scheduler: str = "rr"
    masquerade_bit: int = 14
    random_fully: bool = True
    grace_timeout: float = GRACE_TIMEOUT
    grace_interval: float = GRACE_CHECK_INTERVAL


class IpvsBackend:
    mode = "ipvs"

    def __init__(
        self,
        node: NodeNetwork,
        variant: str,
        families: tuple[int, ...] = (4, 6),
        options: Options | None = None,
        *,
        kernel: Kernel | None = None,
    ) -> None:
        self.node = node
        self.families = families
        self.options = options or Options()
        self.kernel = kernel or Kernel()
        self.iptables = {family: Iptables(family, variant) for family in families}
        self.variant = variant
        self.record = Record()
        self.rules_written: dict[int, RulesConfig] = {}
        self._config: IpvsConfig | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        check_scheduler(self.kernel, self.options.scheduler)
        self._prepare_kernel()
        self._thread = threading.Thread(target=self._drain_loop, name="ipvs-graceful", daemon=True)
        self._thread.start()

    def _prepare_kernel(self) -> None:
        before = self.kernel.set_sysctls(SYSCTLS)
        changed = {key: value for key, value in before.items() if value != SYSCTLS[key]}
        if changed:
            log.info("event=sysctls_set %s", " ".join(f"{k.replace('/', '.')}={SYSCTLS[k]}" for k in changed))
        before = self.kernel.set_sysctls(STRICT_ARP)
        log.info(
            "event=strict_arp arp_ignore=1 arp_announce=2 was_arp_ignore=%s was_arp_announce=%s reason=%r",
            before["net/ipv4/conf/all/arp_ignore"],
            before["net/ipv4/conf/all/arp_announce"],
            "every node holds the Service IPs on kube-ipvs0: only the elected speaker may answer for them",
        )
        self.kernel.ensure_interface()
        self.kernel.ensure_sets(self.families)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.kernel.close()

    # ---- Backend --------------------------------------------------------------------------------------

    def set_node(self, node: NodeNetwork) -> None:
        self.node = node  # the config differs from the record's now, so the next sync is a full one

    def flushed(self) -> bool:
        with self._lock:
            if not self.record.valid:
                return False
            if not self.kernel.interface_present():
                log.warning("event=canary_gone interface=kube-ipvs0: it was deleted behind our back")
                return True
            sample = next(iter(self.record.kernel.virtual_servers), None)
            try:
                if sample is not None and not self.kernel.virtual_server_present(sample):
                    log.warning(
                        "event=canary_gone virtual_server=%r: IPVS was flushed behind our back", str(sample)
                    )
                    return True
                for family, iptables in self.iptables.items():
                    if not iptables.chain_exists(MANGLE, KUBE_PROXY_CANARY):
                        log.warning("event=canary_gone family=ipv%d: iptables rules were flushed", family)
                        return True
            except (OSError, IptablesError) as exc:
                log.warning("event=canary_check_failed error=%s", exc)
                return True
            return False

    def sync(self, snapshot: Snapshot, changed: Set[ServiceKey] | None) -> SyncReport:
        cpu = cpu_seconds()
        with self._lock:
            config = self._render_config()
            full = changed is None or not self.record.valid or config != self._config
            try:
                if full:
                    plan = self._full(snapshot, config)
                else:
                    assert changed is not None
                    updates = {key: self._render(snapshot, key, config) for key in changed}
                    plan = plan_partial(self.record, updates, self._grace())
                self.kernel.apply(plan.ops)
            except (IpvsError, IptablesError, OSError) as exc:
                self.record.invalidate()
                raise SyncError(str(exc)) from exc
            plan.commit()
            self._config = config
        for conflict in plan.conflicts:
            log.warning("event=virtual_server_conflict %s", conflict)
        if plan.conflicts:
            self.record.invalidate()  # a full sync settles which Service gets the address and port
        return SyncReport(
            full=full,
            services=plan.services,
            detail=(
                f"backend={self.variant} ops={len(plan.ops)}"
                f" virtual_servers={len(self.record.kernel.virtual_servers)}"
                f" terminating={len(self.record.terminating)} cpu={cpu_seconds() - cpu:.3f}"
            ),
        )

    # ---- the work -------------------------------------------------------------------------------------

    def _grace(self) -> GracePolicy:
        return GracePolicy(self.options.grace_timeout, time.monotonic())

    def _render_config(self) -> IpvsConfig:
        return IpvsConfig(
            families=self.families,
            scheduler=self.options.scheduler,
            nodeport_addresses=self.node.node_port_addresses(),
            node_ips=self.node.addresses,
            local_addresses=self.node.local_addresses,
        )

    def _render(self, snapshot: Snapshot, key: ServiceKey, config: IpvsConfig) -> ServiceObjects | None:
        info = snapshot.services.get(key)
        return None if info is None else render_service(info, config)

    def _full(self, snapshot: Snapshot, config: IpvsConfig) -> Plan:
        services = {key: render_service(info, config) for key, info in snapshot.services.items()}
        if self.record.valid:
            view = self.record.kernel
            ours = self._ours(view)
        else:
            self.kernel.ensure_interface()
            self.kernel.ensure_sets(self.families)
            view = self.kernel.read(self.families)
            ours = self._ours(view)
            log.info(
                "event=adopting virtual_servers=%d addresses=%d entries=%d: an earlier run's objects stay",
                len(view.virtual_servers),
                len(view.addresses),
                sum(len(e) for e in view.entries.values()),
            )
        self._write_rules()
        return plan_full(self.record, services, view, self._grace(), ours.__contains__)

    def _ours(self, view: KernelView) -> set[VirtualServer]:
        """The virtual servers in `view` that IPVS mode made: on kube-ipvs0's addresses, or on a node port."""
        ports = node_ports(view.entries, self.families)
        return {
            vs
            for vs in view.virtual_servers
            if vs.address in view.addresses or vs.port in ports.get((vs.family, vs.protocol), set())
        }

    def _write_rules(self) -> None:
        for family, iptables in self.iptables.items():
            rules_config = RulesConfig(
                family,
                self.node.pod_cidrs_of(family),
                1 << self.options.masquerade_bit,
                self.options.random_fully,
            )
            # One save of every table (the rules are few): a process costs far more than the text, above all
            # in a user-mode-linux guest.
            tables = {jump.table for jump in JUMPS}
            existing: dict[tuple[str, str], list[str]] = {}
            table = ""
            for line in iptables.save().splitlines():
                if line.startswith("*"):
                    table = line[1:].strip()
                elif line.startswith("-A ") and table in tables:
                    existing.setdefault((table, line.split()[1]), []).append(line)
            iptables.restore(restore_input(render_rules(rules_config), existing))
            self.rules_written[family] = rules_config

    def _drain_loop(self) -> None:
        while not self._stop.wait(self.options.grace_interval):
            try:
                self.drain()
            except (IpvsError, OSError) as exc:
                log.warning("event=graceful_check_failed error=%s", exc)

    def drain(self) -> int:
        """Delete the terminating real servers that drained or ran out of time; how many were deleted."""
        with self._lock:
            if not self.record.terminating or not self.record.valid:
                return 0
            pairs = list(self.record.terminating)
            states = [Drain(vs, real, count) for vs, real, count in self.kernel.drain_states(pairs)]
            plan = plan_drained(self.record, states, time.monotonic())
            self.kernel.apply(plan.ops)
            plan.commit()
        for op in plan.ops:
            log.info("event=real_server_deleted virtual_server=%r real_server=%s", str(op.vs), op.real)
        return len(plan.ops)


def probe(scheduler: str) -> None:
    """Raise IpvsUnavailable when this kernel cannot run IPVS mode with `scheduler` (the daemon's check
    before it connects to the API)."""
    kernel = Kernel()
    try:
        check_scheduler(kernel, scheduler)
    finally:
        kernel.close()
