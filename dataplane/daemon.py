"""`python -m dataplane`: the per-node kube-proxy replacement.

    python -m dataplane --node NAME --mode iptables [--kubeconfig K] [--nodeport-addresses CIDRs] [--cleanup]

Runs in the node's network namespace (a DaemonSet with hostNetwork and NET_ADMIN, or `python -m lab exec node1
-- python -m dataplane --node node1` in the lab). Watches Services, EndpointSlices and its Node through the
shared k8s shell, and programs the node's forwarding through the chosen mode's backend. SIGTERM stops it and
leaves the rules in place (a restart must not interrupt traffic); `--cleanup` removes everything and exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from common.endpoints import slice_facts
from dataplane.backend import MODES, Backend, NodeNetwork
from dataplane.cleanup import leave_other_modes
from dataplane.healthcheck import HealthCheckServers
from dataplane.ipvs.render import SCHEDULERS as IPVS_SCHEDULERS
from dataplane.metrics import Metrics
from dataplane.model import parse_service
from dataplane.nodeinfo import node_network, parse_cidrs
from dataplane.runner import SyncRunner
from dataplane.sync import PARSED, LoopOptions, SyncLoop
from dataplane.tracker import ChangeTracker
from k8s.client import Client
from k8s.events import EventRecorder
from k8s.informer import Handlers, Informer
from k8s.meta import JSON
from k8s.serving import HealthServer

log = logging.getLogger("dataplane")

# Services handled by another proxy are left alone, and headless ones never need rules (kube-proxy's filter).
SERVICE_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"
# What the informers keep of each object's metadata: enough to name it in an Event (the informer tracks
# resourceVersions itself).
METADATA_FIELDS = ("name", "namespace", "uid")


def _metadata(obj: Mapping[str, Any], labels: Sequence[str] = (), annotations: Sequence[str] = ()) -> JSON:
    metadata = obj.get("metadata") or {}
    kept: JSON = {key: metadata[key] for key in METADATA_FIELDS if key in metadata}
    if labels:
        kept["labels"] = {k: v for k, v in (metadata.get("labels") or {}).items() if k in labels}
    if annotations:
        kept["annotations"] = {
            k: v for k, v in (metadata.get("annotations") or {}).items() if k in annotations
        }
    return kept


def keep_service(obj: JSON) -> JSON:
    """What the informer caches of a Service: its metadata and the parsed ports (not the JSON)."""
    return {"metadata": _metadata(obj), PARSED: parse_service(obj)}


def keep_slice(obj: JSON) -> JSON:
    """What the informer caches of an EndpointSlice: its metadata and the parsed endpoints."""
    return {"metadata": _metadata(obj), PARSED: slice_facts(obj)}


def keep_node(obj: JSON) -> JSON:
    spec = obj.get("spec") or {}
    return {
        "metadata": _metadata(obj),
        "spec": {key: spec[key] for key in ("podCIDR", "podCIDRs") if key in spec},
        "status": {"addresses": (obj.get("status") or {}).get("addresses") or []},
    }


def local_addresses() -> list[str]:
    """Every address on this network namespace's interfaces (IPv6 link-local ones left out), from `ip -j
    addr` (pyroute2 would cost this process ~20 MB for a list read once per sync)."""
    try:
        listing = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
        )
        links = json.loads(listing.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("event=addresses_unreadable error=%s", exc)
        return []
    found = []
    for link in links:
        for info in link.get("addr_info") or []:
            try:
                ip = ipaddress.ip_address(str(info.get("local")))
            except ValueError:
                continue
            if not (ip.version == 6 and ip.is_link_local):
                found.append(str(ip))
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataplane", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--node", default=os.environ.get("NODE_NAME", ""), help="this node's name (NODE_NAME)"
    )
    parser.add_argument("--mode", default="iptables", choices=[*MODES, "auto"])
    parser.add_argument("--kubeconfig", help="kubeconfig (default: KUBECONFIG, in-cluster, ~/.kube/config)")
    parser.add_argument(
        "--nodeport-addresses",
        default="",
        help="comma-separated CIDRs: NodePorts answer only on local addresses inside them (default: all)",
    )
    parser.add_argument(
        "--cluster-cidr", default="", help="comma-separated pod CIDRs (default: the Node's spec.podCIDRs)"
    )
    parser.add_argument(
        "--cleanup", action="store_true", help="remove everything any mode installed, and exit"
    )
    parser.add_argument("--iptables-backend", default="auto", choices=["auto", "nft", "legacy"])
    parser.add_argument(
        "--ipvs-scheduler", default="rr", choices=IPVS_SCHEDULERS, help="IPVS mode's scheduler (default rr)"
    )
    parser.add_argument(
        "--ipvs-graceful-timeout",
        type=float,
        default=60.0,
        help="seconds a removed TCP/SCTP endpoint keeps its connections at most in IPVS mode (0: none)",
    )
    parser.add_argument("--ip-families", default="4,6", help="address families to program: 4, 6 or 4,6")
    parser.add_argument("--min-sync-period", type=float, default=1.0, help="seconds between syncs, at least")
    parser.add_argument("--sync-period", type=float, default=30.0, help="seconds between periodic syncs")
    parser.add_argument(
        "--full-sync-period", type=float, default=3600.0, help="seconds between full rewrites"
    )
    parser.add_argument("--masquerade-bit", type=int, default=14, help="bit of the SNAT mark (0x4000)")
    parser.add_argument("--health-address", default=None, help="/healthz, /livez, /metrics (default: POD_IP)")
    parser.add_argument("--health-port", type=int, default=10256)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        args.nodeport_cidrs = parse_cidrs(args.nodeport_addresses) or None
        args.cluster_cidrs = parse_cidrs(args.cluster_cidr)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        args.families = tuple(sorted({int(f) for f in args.ip_families.split(",") if f.strip()}))
    except ValueError:
        args.families = ()
    if not args.families or not set(args.families) <= {4, 6}:
        parser.error("--ip-families must be 4, 6 or 4,6")
    if not args.cleanup and not args.node:
        parser.error("--node (or NODE_NAME) is required")
    if not 0 <= args.masquerade_bit <= 31:
        parser.error("--masquerade-bit must be 0-31")
    return args


def nftables_unavailable() -> str | None:
    """Why nftables mode cannot run here (None: it can): a checked, never committed, transaction with a nat
    chain, so a kernel without nf_tables (or without its IPv4 family) says so."""
    probe = (
        "add table ip ironlb-probe\n"
        "add chain ip ironlb-probe c { type nat hook prerouting priority -100; }\n"
    )
    try:
        result = subprocess.run(
            ["nft", "--check", "-f", "-"],
            input=probe,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nft cannot run ({exc})"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return f"the kernel refuses an nftables nat chain ({lines[0] if lines else 'nft failed'})"
    return None


def choose_mode(requested: str, scheduler: str = "rr") -> str | None:
    """The mode to run, or None (after one log line naming what is missing) when it cannot run here."""
    if requested == "auto":
        why_not = nftables_unavailable()
        if why_not is None:
            log.info("event=mode_chosen mode=nftables reason=%r", "auto: the kernel and nft support nftables")
            return "nftables"
        log.info("event=mode_chosen mode=iptables reason=%r", f"auto: no nftables: {why_not}")
        return "iptables"
    if requested == "ipvs":
        from dataplane.ipvs.backend import probe
        from dataplane.ipvs.kernel import IpvsError

        try:
            probe(scheduler)
        except (IpvsError, OSError) as exc:
            log.error("event=mode_unavailable mode=ipvs reason=%r", str(exc))
            return None
    return requested


def make_backend(mode: str, args: argparse.Namespace, node: NodeNetwork) -> Backend:
    if mode == "ipvs":
        from dataplane.ipvs.backend import IpvsBackend, Options

        variant, _ = _iptables_variant(args)
        options = Options(
            scheduler=args.ipvs_scheduler,
            masquerade_bit=args.masquerade_bit,
            grace_timeout=args.ipvs_graceful_timeout,
        )
        return IpvsBackend(node, variant, args.families, options)
    if mode == "nftables":
        from dataplane.nftables.backend import NftablesBackend

        return NftablesBackend(node, args.families, masquerade_bit=args.masquerade_bit)
    from dataplane.iptables.backend import IptablesBackend

    variant, _ = _iptables_variant(args)
    return IptablesBackend(node, variant, args.families, masquerade_bit=args.masquerade_bit)


def _iptables_variant(args: argparse.Namespace) -> tuple[str, str]:
    from dataplane.iptables.kernel import detect_variant

    if args.iptables_backend == "auto":
        variant, why = detect_variant()
    else:
        variant, why = args.iptables_backend, "--iptables-backend"
    log.info("event=iptables_backend variant=%s reason=%r", variant, why)
    return variant, why


def run(args: argparse.Namespace, client: Client, stop: threading.Event, mode: str) -> int:
    recorder = EventRecorder(client, "ironlb-dataplane", host=args.node)
    nodes: dict[str, JSON] = {}
    loop_ref: list[SyncLoop] = []

    addresses = local_addresses
    if mode == "ipvs":
        from dataplane.ipvs.kernel import local_addresses as addresses  # netlink, and not kube-ipvs0's

    def node_source() -> NodeNetwork:
        return node_network(
            args.node,
            nodes.get("node"),
            addresses() if args.nodeport_cidrs or mode == "ipvs" else (),
            args.nodeport_cidrs,
            args.cluster_cidrs,
            keep_local_addresses=mode == "ipvs",
        )

    backend = make_backend(mode, args, node_source())
    metrics = Metrics()

    def report(kind: str, obj: Mapping[str, Any], problems: str) -> None:
        metadata = obj.get("metadata") or {}
        log.warning(
            "event=bad_object kind=%s object=%s/%s problems=%r",
            kind,
            metadata.get("namespace"),
            metadata.get("name"),
            problems,
        )
        recorder.event(
            obj, "Warning", "Invalid" + kind, f"ignored by the dataplane: {problems}", default_kind=kind
        )

    health_checks = HealthCheckServers(lambda: bool(loop_ref) and loop_ref[0].healthy())
    tracker = ChangeTracker(args.node)
    runner_ref: list[SyncRunner] = []
    loop = SyncLoop(
        tracker,
        backend,
        metrics,
        node_source=node_source,
        request=lambda: runner_ref[0].request() if runner_ref else None,
        retry=lambda after: runner_ref[0].retry(after) if runner_ref else None,
        health=health_checks,
        report_problem=report,
        options=LoopOptions(full_sync_period=args.full_sync_period, health_timeout=2 * args.sync_period),
        after_first_sync=lambda: leave_other_modes(mode),
    )
    loop_ref.append(loop)
    runner = SyncRunner(loop.sync, args.min_sync_period, args.sync_period)
    runner_ref.append(runner)

    def on_node(kind: str, obj: JSON) -> None:
        if kind == "DELETED":
            nodes.pop("node", None)
        else:
            nodes["node"] = obj
        runner.request()

    informers = [
        Informer(
            client,
            "/api/v1/nodes",
            Handlers.by_type(on_node),
            query={"fieldSelector": f"metadata.name={args.node}"},
            transform=keep_node,
        ),
        Informer(
            client,
            "/api/v1/services",
            Handlers.by_type(loop.on_service),
            query={"labelSelector": SERVICE_SELECTOR},
            transform=keep_service,
        ),
        Informer(
            client,
            "/apis/discovery.k8s.io/v1/endpointslices",
            Handlers.by_type(loop.on_slice),
            query={"labelSelector": SERVICE_SELECTOR},
            transform=keep_slice,
        ),
    ]
    server = HealthServer(args.health_address, args.health_port, registry=metrics.registry)
    server.add_check("sync", loop.health_check, liveness=True)
    server.add_check("informers", lambda: None if all(i.has_synced() for i in informers) else "not synced")
    thread = threading.Thread(target=runner.loop, name="sync", daemon=True)
    try:
        server.start()
        for informer in informers:
            informer.start()
        thread.start()
        for informer, source in zip(informers, ("node", "services", "endpointslices"), strict=True):
            while not informer.wait_for_sync(0.5):
                if stop.is_set():
                    return 0
            log.info("event=informer_synced source=%s objects=%d", source, len(informer))
            loop.source_synced(source)
        stop.wait()
        log.info("event=stopping rules=kept")
        return 0
    finally:
        runner.stop()
        for informer in informers:
            informer.stop()
        thread.join(30)
        health_checks.stop()
        server.stop()
        recorder.stop(2)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.cleanup:
        from dataplane.cleanup import cleanup_all

        failures = cleanup_all()
        log.info("event=cleanup_done failures=%d", failures)
        return 1 if failures else 0
    # The mode first: a kernel that cannot run it fails at once, with one line, before any API traffic.
    mode = choose_mode(args.mode, args.ipvs_scheduler)
    if mode is None:
        return 2
    # Whatever chose it (the flag or auto), the mode a node runs is what an operator looks for first.
    log.info("event=starting node=%s mode=%s", args.node, mode)
    client = Client.open_or_report(args.kubeconfig, user_agent="ironlb-dataplane")
    if client is None:
        return 2
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    try:
        return run(args, client, stop, mode)
    finally:
        client.close()
