"""`python -m controller`: the MetalLB-compatible IP address controller (a kopf operator)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from common.config import IP_SHARING_ANNOTATION
from common.pools import IP_SHARING_CLUSTER, IP_SHARING_SCOPES
from controller.operator import Controller, Options
from k8s.client import ConfigError, load_configuration
from k8s.serving import HealthServer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m controller", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig (default: KUBECONFIG, in-cluster, ~/.kube/config)")
    parser.add_argument("--configmap-namespace", default="metallb-system", help="ConfigMap namespace")
    parser.add_argument("--configmap-name", default="config", help="ConfigMap name (key `config`)")
    parser.add_argument(
        "--load-balancer-class", default=None, help="handle only Services of this class (default: no class)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=7472, help="port of /metrics, /healthz and /readyz (0: none)"
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address that port binds (default localhost; in a pod, its IP from the downward API)",
    )
    parser.add_argument(
        "--namespace", default="metallb-system", help="namespace of the pools, advertisements, Lease"
    )
    election = parser.add_mutually_exclusive_group()
    election.add_argument(
        "--leader-elect", dest="leader_elect", action="store_true", default=True,
        help="only the holder of the Lease assigns IPs (default)",
    )
    election.add_argument(
        "--standalone", dest="leader_elect", action="store_false",
        help="no leader election: run only one replica",
    )
    parser.add_argument("--lease-name", default="ironlb-controller", help="coordination.k8s.io Lease name")
    parser.add_argument("--lease-duration", type=int, default=3, help="lease validity (s)")
    parser.add_argument("--renew-deadline", type=float, default=2.0, help="renew deadline (s)")
    parser.add_argument("--retry-period", type=float, default=0.5, help="seconds between lease attempts")
    parser.add_argument("--identity", default="", help="default: POD_NAME or host_pid")
    parser.add_argument("--workers", type=int, default=16, help="Services reconciled concurrently")
    parser.add_argument(
        "--resync-period", type=float, default=300.0, help="seconds between full Service re-lists (0: never)"
    )
    parser.add_argument(
        "--ip-sharing",
        choices=IP_SHARING_SCOPES,
        default=IP_SHARING_CLUSTER,
        help="who may share an IP (allow-shared-ip) in pools that do not say (their annotation "
        f"{IP_SHARING_ANNOTATION}): any Services with the same key (cluster, MetalLB's rule) or only "
        "Services of one namespace",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not args.renew_deadline < args.lease_duration:
        parser.error("--renew-deadline must be shorter than --lease-duration")
    if not args.renew_deadline > 1.2 * args.retry_period:
        parser.error("--renew-deadline must be longer than 1.2 x --retry-period (client-go's rule)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    # kopf's own chatter stays at warning unless we debug.
    logging.getLogger("kopf").setLevel(logging.DEBUG if args.log_level == "debug" else logging.WARNING)
    options = Options(
        kubeconfig=args.kubeconfig,
        configmap_namespace=args.configmap_namespace,
        configmap_name=args.configmap_name,
        load_balancer_class=args.load_balancer_class or None,
        namespace=args.namespace,
        leader_elect=args.leader_elect,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        identity=args.identity,
        workers=args.workers,
        resync_period=args.resync_period,
        ip_sharing=args.ip_sharing,
    )
    try:
        configuration = load_configuration(args.kubeconfig)
    except ConfigError as e:
        log = logging.getLogger("controller")
        log.error("event=no_credentials kubeconfig=%s error=%r", args.kubeconfig, str(e))
        return 2
    controller = Controller(options, configuration)
    if args.metrics_port:
        controller.health.serve_on(HealthServer(args.metrics_address, args.metrics_port)).start()
    return asyncio.run(controller.run())


if __name__ == "__main__":
    sys.exit(main())
