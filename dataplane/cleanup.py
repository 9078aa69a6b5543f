"""`--cleanup`: remove everything the dataplane installs, in every mode, from the current network namespace.

- iptables (both variants, both families): the jumps from the built-in chains, then every chain of ours
  (kube-proxy's names: the top-level chains, the canaries and every KUBE-SVC/SVL/EXT/FW/SEP chain), flushed
  and deleted in one restore per table. Chains we do not own (kubelet's KUBE-FIREWALL, KUBE-MARK-DROP,
  KUBE-KUBELET-CANARY) stay.
- nftables: the tables named NFTABLES_TABLE, in every family.
- IPVS: the virtual servers on kube-ipvs0's addresses and on our node ports, that interface, and our ipsets
  (dataplane.ipvs.cleanup).

Only what exists is touched (no table is created to be emptied). Like kube-proxy's --cleanup, it is meant for
a node leaving this dataplane; it reports what it removed and whether anything failed. A node switching
modes keeps the chains its new mode writes too (iptables and IPVS modes share KUBE-SERVICES and friends).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from dataplane.iptables.kernel import VARIANTS, Iptables, IptablesError
from dataplane.iptables.rules import (
    FILTER,
    KUBE_PROXY_CANARY,
    LEGACY_CHAIN_PREFIXES,
    MANGLE,
    NAT,
    SERVICE_CHAIN_PREFIXES,
    TOP_CHAINS,
)
from dataplane.ipvs.rules import CHAINS as IPVS_CHAINS

log = logging.getLogger("dataplane.cleanup")

NFTABLES_TABLE = "ironlb"  # the table the nftables mode owns (one per family)


BUILTIN_CHAINS = {
    FILTER: ("INPUT", "FORWARD", "OUTPUT"),
    NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}


@cache
def _ipvs_chains(table: str) -> frozenset[str]:
    # Also kube-proxy's IPVS output filter: a node switching from kube-proxy's IPVS mode loses it.
    return frozenset(IPVS_CHAINS.get(table, ())) | ({"KUBE-IPVS-OUT-FILTER"} if table == FILTER else set())


@cache
def _iptables_chains(table: str) -> frozenset[str]:
    """iptables mode's chains with fixed names (it also writes NAT's per-Service chains)."""
    return frozenset(TOP_CHAINS.get(table, ())) | {KUBE_PROXY_CANARY}


@cache
def _owned(table: str) -> frozenset[str]:
    return _iptables_chains(table) | _ipvs_chains(table)


def _ours(table: str, chain: str) -> bool:
    if chain in _owned(table):
        return True
    return table == NAT and chain.startswith(SERVICE_CHAIN_PREFIXES + LEGACY_CHAIN_PREFIXES)


def _kept(keep: str | None, table: str, chain: str) -> bool:
    """A chain that the mode being kept writes itself (so a node switching to it keeps it)."""
    if keep == "iptables":
        return chain in _iptables_chains(table) or (table == NAT and chain.startswith(SERVICE_CHAIN_PREFIXES))
    if keep == "ipvs":
        return chain in _ipvs_chains(table)
    return False


@dataclass
class TableCleanup:
    """What goes from one table: our chains, and the rules (as `-D`) jumping to them from built-in chains."""

    chains: list[str] = field(default_factory=list)
    jumps: list[str] = field(default_factory=list)

    def restore_input(self, table: str) -> str:
        doomed = sorted(self.chains)
        return "\n".join(
            [
                f"*{table}",
                *(f":{c} - [0:0]" for c in doomed),  # flushed first: a chain is deleted only when empty
                *self.jumps,
                *(f"-X {c}" for c in doomed),
                "COMMIT",
                "",
            ]
        )


def plan_cleanup(save: Iterable[str], keep: str | None = None) -> dict[str, TableCleanup]:
    """Table -> what to remove from it (our chains and the jumps to them, but those mode `keep` writes), from
    the lines of one `-save` of a variant and family: one process, not one per built-in chain (each costs
    ~0.5 s of CPU in a user-mode-linux guest). Only tables that exist and hold something to remove appear,
    so cleaning never creates a table.

    Each line is looked at once and only those to act on are kept: a node leaving another mode after its
    first iptables sync reads its own ruleset here (~430,000 lines at 10,000 Services), all of which stays."""
    plans: dict[str, TableCleanup] = {}
    table = ""
    plan = TableCleanup()
    owned: frozenset[str] = frozenset()
    builtin: tuple[str, ...] = ()
    for line in save:
        if line.startswith("-A "):
            # Most lines are rules in our own chains: deleting a chain removes them, so they need no look.
            if line.startswith(builtin) and " -j " in line:
                target = line.rpartition(" -j ")[2].split()[0]
                if target in owned and not _kept(keep, table, target):
                    plan.jumps.append("-D" + line[2:].rstrip("\n"))
        elif line.startswith(":"):
            chain = line[1:].split(maxsplit=1)[0]
            if _ours(table, chain) and not _kept(keep, table, chain):
                plan.chains.append(chain)
        elif line.startswith("*"):
            table = line[1:].strip()
            plan = plans.setdefault(table, TableCleanup())
            owned = _owned(table)
            builtin = tuple(f"-A {c} " for c in BUILTIN_CHAINS.get(table, ()))
    return {t: p for t in (FILTER, NAT, MANGLE) if (p := plans.get(t, TableCleanup())).chains or p.jumps}


def cleanup_iptables(iptables: Iptables, keep: str | None = None) -> tuple[int, int]:
    """(chains removed, failures) for one variant and family; the chains mode `keep` writes stay."""
    removed = failures = 0
    try:
        plans = plan_cleanup(iptables.save_lines(), keep)
    except IptablesError:
        return 0, 0  # this variant cannot be read here: nothing of ours can be in it
    for table, plan in plans.items():
        try:
            iptables.restore(plan.restore_input(table))
            removed += len(plan.chains)
            log.info(
                "event=cleaned variant=%s family=ipv%d table=%s chains=%d jumps=%d",
                iptables.variant,
                iptables.family,
                table,
                len(plan.chains),
                len(plan.jumps),
            )
        except IptablesError as exc:
            log.error(
                "event=cleanup_failed variant=%s family=ipv%d table=%s error=%s",
                iptables.variant,
                iptables.family,
                table,
                exc,
            )
            failures += 1
    return removed, failures


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # the tool is not installed: nothing of that mode can be here


def cleanup_nftables() -> int:
    """Delete nftables mode's tables, by name (an absent one is no error): listing them first would make
    nft read every set element in the namespace (seconds, at 10,000 Services)."""
    failures = 0
    for family in ("ip", "ip6"):
        done = _run(["nft", "delete", "table", family, NFTABLES_TABLE])
        if done is None:
            return failures  # no nft: nothing of nftables mode can be here
        if done.returncode == 0:
            log.info("event=cleaned nftables_table=%s family=%s", NFTABLES_TABLE, family)
        elif "No such file or directory" not in done.stderr:
            failures += 1
            log.error(
                "event=cleanup_failed table=%s family=%s error=%r",
                NFTABLES_TABLE,
                family,
                done.stderr.strip()[:300],
            )
    return failures


def cleanup_all(keep: str | None = None) -> int:
    """Remove everything of every mode here (but `keep`'s); the number of failures (0: all clean)."""
    failures = 0
    for variant in VARIANTS:
        for family in (4, 6):
            _, failed = cleanup_iptables(Iptables(family, variant), keep)
            failures += failed
    if keep != "nftables":
        failures += cleanup_nftables()
    if keep != "ipvs":
        from dataplane.ipvs.cleanup import cleanup_ipvs  # after the rules that use its ipsets are gone

        # A node leaving IPVS mode keeps the virtual servers that carry connections until those end.
        failures += cleanup_ipvs(drain=keep is not None)
    return failures


def leave_other_modes(mode: str) -> bool:
    """After `mode`'s first successful sync: remove what other modes installed (the node was switched from
    one of them), now that `mode`'s rules carry the traffic. Established connections live in conntrack and
    keep their translations. True when everything went (else the caller tries again after its next sync)."""
    failures = cleanup_all(keep=mode)
    if failures:
        log.warning("event=other_modes_left mode=%s failures=%d", mode, failures)
    return not failures
