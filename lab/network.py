"""The thin shell that applies a LabPlan to the kernel with `ip -batch`, inspects it and removes it.

All names and addresses come from lab/topology.py; this module only runs `ip` and `sysctl`. Teardown works
from the lab prefix alone (every lab object is named `<prefix>-...`), so it also removes what a crashed run
left behind.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.topology import (
    LabPlan,
    node_sysctls,
    render_host_batch,
    render_node_batch,
    render_switch_batch,
)

log = logging.getLogger("lab.network")

NETNS_DIR = Path("/run/netns")
SYS_CLASS_NET = Path("/sys/class/net")


class NetworkError(RuntimeError):
    """Building or inspecting the lab network failed; the message says which command and why."""


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise NetworkError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail}")
    return proc.stdout


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Run `ip` commands in one process; the first failing line aborts with its error."""
    if not lines:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    _run(argv, stdin="\n".join(lines) + "\n")


def set_sysctls(netns: str, values: Mapping[str, str]) -> None:
    if values:
        _run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])


def lab_prefix_match(prefix: str, name: str) -> bool:
    """True for names of this lab's objects; prefixes have no '-', so `ilb-` never matches lab `ilbt`."""
    return name.startswith(f"{prefix}-")


def netns_names(starting_with: str = "") -> list[str]:
    """The named network namespaces (`ip netns list`) whose name starts with `starting_with`, sorted."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir() if entry.name.startswith(starting_with))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns(prefix: str | None = None) -> list[str]:
    """The netns of the lab `prefix` (every one without a prefix)."""
    return netns_names("" if prefix is None else f"{prefix}-")


def list_host_links(prefix: str | None = None) -> list[str]:
    names = sorted(entry.name for entry in SYS_CLASS_NET.iterdir())
    return [n for n in names if prefix is None or lab_prefix_match(prefix, n)]


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is `netns` (what `ip netns pids` reports)."""
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def host_routes() -> list[tuple[str, str]]:
    """(destination, device) of every route in the host's main tables, IPv4 and IPv6."""
    routes: list[tuple[str, str]] = []
    for family in ("-4", "-6"):
        out = _run(["ip", "-j", family, "route", "show"])
        for route in json.loads(out or "[]"):
            routes.append((str(route.get("dst", "")), str(route.get("dev", ""))))
    return routes


def preflight(plan: LabPlan) -> None:
    """Refuse to build over an existing lab or next to a host network the mgmt subnet would shadow."""
    leftovers = list_netns(plan.prefix) + list_host_links(plan.prefix)
    if leftovers:
        raise NetworkError(
            f"lab {plan.name}: objects with prefix {plan.prefix}- already exist ({', '.join(leftovers)}); "
            f"run `python -m lab down` for it first"
        )
    mgmt_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [plan.mgmt_gateway4.network]
    if plan.mgmt_gateway6 is not None:
        mgmt_nets.append(plan.mgmt_gateway6.network)
    for dst, dev in host_routes():
        if dst in ("default", "") or dst.startswith(("fe80:", "ff00:", "multicast")):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        for mgmt in mgmt_nets:
            if net.version == mgmt.version and net.overlaps(mgmt):
                raise NetworkError(
                    f"lab {plan.name}: mgmt subnet {mgmt} overlaps the host route {dst} dev {dev}; "
                    "choose another mgmt.ipv4-subnet/ipv6-subnet in the topology file"
                )


def build(plan: LabPlan) -> None:
    """Create every namespace, bridge, veth, address and route of the plan (the caller tears down on
    error)."""
    preflight(plan)
    ip_batch(render_host_batch(plan))
    ip_batch(render_switch_batch(plan), netns=plan.switch_netns)
    for node in plan.nodes:
        # Sysctls first: interfaces brought up afterwards skip IPv6 duplicate address detection.
        set_sysctls(node.netns, node_sysctls(node))
        ip_batch(render_node_batch(plan, node), netns=node.netns)
        if node.is_k8s_node and node.pod_cidr is not None:
            masquerade_to_mgmt(node.netns, str(node.pod_cidr), str(plan.mgmt_gateway4.network))
    log.info("event=network-built lab=%s prefix=%s nodes=%d", plan.name, plan.prefix, len(plan.nodes))


MASQUERADE_TABLE = "ironlb-lab"


def masquerade_to_mgmt(netns: str, pod_cidr: str, mgmt: str) -> None:
    """Pods reach the API server (on the host's mgmt gateway) from their node's mgmt address, as a CNI
    plugin's ipMasq does for traffic leaving the pod network: the host has no route back to pod addresses,
    and must not get one. Only pod -> mgmt traffic is rewritten; everything else keeps its pod source. The
    table is the lab's own (no component touches it), in the node's netns."""
    rules = (
        f"table ip {MASQUERADE_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {pod_cidr} ip daddr {mgmt} masquerade\n"
        "  }\n"
        "}\n"
    )
    _run(["ip", "netns", "exec", netns, "nft", "-f", "-"], stdin=rules)


def lab_process_ids(prefix: str) -> list[int]:
    """Every process living in one of the lab's namespaces (nodes, switch, pods)."""
    pids: set[int] = set()
    for netns in list_netns(prefix):
        pids.update(netns_pids(netns))
    pids.discard(os.getpid())
    return sorted(pids)


def destroy(prefix: str) -> list[str]:
    """Delete every host link and netns carrying the prefix; returns what it removed. Kill the lab's processes
    first (lab_process_ids): a netns with a live process survives `ip netns del` with its interfaces."""
    # Deleting the host end of a veth removes the pair at once, so nothing lingers while netns cleanup runs.
    links = list_host_links(prefix)
    _delete_all("link", links)
    namespaces = list_netns(prefix)
    _delete_all("netns", namespaces)
    removed = links + namespaces
    still = list_netns(prefix) + list_host_links(prefix)
    if still:
        raise NetworkError(f"lab prefix {prefix}: could not remove {', '.join(still)}")
    if removed:
        log.info("event=network-destroyed prefix=%s removed=%s", prefix, ",".join(removed))
    return removed


def _delete_all(kind: str, names: Sequence[str]) -> None:
    """`ip <kind> del` each name in one process, going on past failures (what is left is checked after)."""
    if names:
        batch = "".join(f"{kind} del {name}\n" for name in names)
        argv = ["ip", "-force", "-batch", "-"]
        subprocess.run(argv, input=batch, capture_output=True, text=True, check=False)
