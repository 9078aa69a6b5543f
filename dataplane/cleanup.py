"""`--cleanup`: remove everything the dataplane installs, in every mode, from the current network namespace.

- iptables (both variants, both families): the jumps from the built-in chains, then every chain of ours
  (kube-proxy's names: the top-level chains, the canaries and every KUBE-SVC/SVL/EXT/FW/SEP chain), flushed
  and deleted in one restore per table. Chains we do not own (kubelet's KUBE-FIREWALL, KUBE-MARK-DROP,
  KUBE-KUBELET-CANARY) stay.
- nftables: the tables named NFTABLES_TABLE, in every family.
- IPVS: the virtual servers on the addresses of the kube-ipvs0 interface, that interface, and the KUBE-*
  ipsets.

Only what exists is touched (no table is created to be emptied). Like kube-proxy's --cleanup, it is meant for
a node leaving this dataplane; it reports what it removed and whether anything failed.
"""

from __future__ import annotations

import json
import logging
import subprocess

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

log = logging.getLogger("dataplane.cleanup")

NFTABLES_TABLE = "ironlb"  # the table the nftables mode owns (one per family)
IPVS_INTERFACE = "kube-ipvs0"
IPSET_PREFIX = "KUBE-"
# The iptables chains of IPVS mode beyond iptables mode's (kube-proxy's names, which IPVS mode keeps).
IPVS_CHAINS = {
    NAT: ("KUBE-NODE-PORT", "KUBE-LOAD-BALANCER"),
    FILTER: ("KUBE-SOURCE-RANGES-FIREWALL", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER"),
}


BUILTIN_CHAINS = {
    FILTER: ("INPUT", "FORWARD", "OUTPUT"),
    NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}


def _owned(table: str) -> set[str]:
    return set(TOP_CHAINS.get(table, ())) | set(IPVS_CHAINS.get(table, ())) | {KUBE_PROXY_CANARY}


def _ours(table: str, chain: str) -> bool:
    if chain in _owned(table):
        return True
    return table == NAT and chain.startswith(SERVICE_CHAIN_PREFIXES + LEGACY_CHAIN_PREFIXES)


def _tables(iptables: Iptables) -> list[str]:
    """The tables this variant and family have at all (so that cleaning never creates one)."""
    try:
        text = iptables.save()
    except IptablesError:
        return []
    return [line[1:].strip() for line in text.splitlines() if line.startswith("*")]


def cleanup_iptables(iptables: Iptables) -> tuple[int, int]:
    """(chains removed, failures) for one variant and family."""
    removed = failures = 0
    present = _tables(iptables)
    for table in (FILTER, NAT, MANGLE):
        if table not in present:
            continue
        lines: list[str] = []
        for chain in BUILTIN_CHAINS[table]:
            try:
                rules = iptables.list_chain(table, chain) or []
            except IptablesError as exc:
                log.warning("event=cleanup_list_failed table=%s chain=%s error=%s", table, chain, exc)
                failures += 1
                continue
            for rule in rules:
                target = rule.rpartition(" -j ")[2].split()[0] if " -j " in rule else ""
                if target in _owned(table):
                    lines.append("-D" + rule[2:])
        try:
            chains = sorted(c for c in iptables.chain_names(table) if _ours(table, c))
        except IptablesError as exc:
            log.warning("event=cleanup_list_failed table=%s error=%s", table, exc)
            failures += 1
            continue
        if not lines and not chains:
            continue
        text = "\n".join(
            [
                f"*{table}",
                *(f":{c} - [0:0]" for c in chains),
                *lines,
                *(f"-X {c}" for c in chains),
                "COMMIT",
                "",
            ]
        )
        try:
            iptables.restore(text)
            removed += len(chains)
            log.info(
                "event=cleaned variant=%s family=ipv%d table=%s chains=%d jumps=%d",
                iptables.variant,
                iptables.family,
                table,
                len(chains),
                len(lines),
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


def cleanup_ipvs() -> int:
    failures = 0
    addresses: set[str] = set()
    shown = _run(["ip", "-j", "addr", "show", "dev", IPVS_INTERFACE])
    if shown is not None and shown.returncode == 0 and shown.stdout.strip():
        for link in json.loads(shown.stdout):
            addresses |= {str(a.get("local")) for a in link.get("addr_info", [])}
    listing = _run(["ipvsadm", "-Ln"])
    if listing is not None and listing.returncode == 0:
        for line in listing.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] in ("TCP", "UDP", "SCTP"):
                host = fields[1].rsplit(":", 1)[0].strip("[]")
                if host in addresses:
                    flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[fields[0]]
                    done = _run(["ipvsadm", "-D", flag, fields[1]])
                    failures += done is None or done.returncode != 0
    if shown is not None and shown.returncode == 0 and shown.stdout.strip():
        done = _run(["ip", "link", "delete", IPVS_INTERFACE])
        failures += done is None or done.returncode != 0
        log.info("event=cleaned interface=%s", IPVS_INTERFACE)
    sets = _run(["ipset", "list", "-n"])
    if sets is not None and sets.returncode == 0:
        for name in sets.stdout.split():
            if name.startswith(IPSET_PREFIX):
                done = _run(["ipset", "destroy", name])
                failures += done is None or done.returncode != 0
    return failures


def cleanup_all(keep: str | None = None) -> int:
    """Remove everything of every mode here (but `keep`'s); the number of failures (0: all clean)."""
    failures = 0
    if keep not in ("iptables", "ipvs"):  # IPVS mode has iptables chains of its own
        for variant in VARIANTS:
            for family in (4, 6):
                _, failed = cleanup_iptables(Iptables(family, variant))
                failures += failed
    if keep != "nftables":
        failures += cleanup_nftables()
    if keep != "ipvs":
        failures += cleanup_ipvs()
    return failures


def leave_other_modes(mode: str) -> bool:
    """After `mode`'s first successful sync: remove what other modes installed (the node was switched from
    one of them), now that `mode`'s rules carry the traffic. Established connections live in conntrack and
    keep their translations. True when everything went (else the caller tries again after its next sync)."""
    failures = cleanup_all(keep=mode)
    if failures:
        log.warning("event=other_modes_left mode=%s failures=%d", mode, failures)
    return not failures
