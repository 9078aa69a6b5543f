"""`python -m speaker --node NAME`: the layer-2 speaker of one node (see docs/speaker.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from k8s.client import Client
from k8s.serving import HealthServer
from speaker.daemon import Options, Speaker
from speaker.interfaces import DEFAULT_PATTERNS, compile_patterns

log = logging.getLogger("speaker")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m speaker", description=__doc__)
    parser.add_argument(
        "--node",
        default=env("METALLB_NODE_NAME") or env("NODE_NAME"),
        help="this Kubernetes Node's name (default: METALLB_NODE_NAME or NODE_NAME)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig (default: KUBECONFIG, in-cluster, ~/.kube/config)")
    parser.add_argument(
        "--namespace",
        default=env("METALLB_NAMESPACE") or "metallb-system",
        help="namespace of the configuration: the ConfigMap, IPAddressPools and L2Advertisements",
    )
    parser.add_argument(
        "--speaker-namespace",
        default=env("POD_NAMESPACE") or "",
        help="namespace of the speaker Leases and ServiceL2Statuses (default: POD_NAMESPACE or --namespace)",
    )
    parser.add_argument("--configmap-name", default="config", help="MetalLB ConfigMap name (key `config`)")
    parser.add_argument("--lb-class", default=None, help="announce only Services of this loadBalancerClass")
    parser.add_argument(
        "--ml-bind-addr",
        default=env("METALLB_ML_BIND_ADDR") or "::",
        help="membership UDP address (default :: , every address)",
    )
    parser.add_argument("--ml-bind-port", type=int, default=int(env("METALLB_ML_BIND_PORT") or 7946))
    parser.add_argument(
        "--ml-secret-key-path",
        default=env("METALLB_ML_SECRET_KEY_PATH"),
        help="file holding the membership key (MetalLB's memberlist Secret, key secretkey); one key per "
        "line, the first signs, all are accepted (rotation). Or set METALLB_ML_SECRET_KEY.",
    )
    parser.add_argument(
        "--exclude-interfaces",
        action="append",
        default=[],
        metavar="REGEX",
        help="also never announce on interfaces matching REGEX (on top of MetalLB's defaults)",
    )
    parser.add_argument("--metrics-address", default=None, help="default: POD_IP or 127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=7472, help="/metrics, /livez, /readyz (0: any)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not args.node:
        parser.error("--node is required (or METALLB_NODE_NAME / NODE_NAME)")
    return args


def load_keys(path: str | None) -> list[bytes]:
    if path:
        lines = [line.strip() for line in Path(path).read_bytes().splitlines()]
        return [line for line in lines if line]
    value = os.environ.get("METALLB_ML_SECRET_KEY", "").strip()
    return [value.encode()] if value else []


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    # Other threads hold the GIL for at most this long before the packet thread gets it back: ARP replies
    # within a millisecond even while a big sync runs.
    sys.setswitchinterval(0.0005)
    try:
        keys = load_keys(args.ml_secret_key_path)
    except OSError as exc:
        log.error("event=no_secret_key path=%s error=%r", args.ml_secret_key_path, str(exc))
        return 2
    if not keys:
        log.error(
            "event=no_secret_key hint=%r",
            "mount the memberlist Secret: --ml-secret-key-path or METALLB_ML_SECRET_KEY",
        )
        return 2
    try:
        excluded = (*DEFAULT_PATTERNS, *compile_patterns(args.exclude_interfaces))
    except Exception as exc:
        log.error("event=bad_flag flag=--exclude-interfaces error=%r", str(exc))
        return 2
    client = Client.open_or_report(args.kubeconfig, user_agent=f"ironlb-speaker/{args.node}")
    if client is None:
        return 2
    options = Options(
        node=args.node,
        namespace=args.namespace,
        own_namespace=args.speaker_namespace,
        configmap_name=args.configmap_name,
        load_balancer_class=args.lb_class or None,
        keys=keys,
        ml_bind=args.ml_bind_addr,
        ml_port=args.ml_bind_port,
        excluded=excluded,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        pod_name=os.environ.get("POD_NAME", ""),
        pod_uid=os.environ.get("POD_UID", ""),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        speaker = Speaker(client, options)
    except OSError as exc:
        log.error("event=start_failed error=%r", str(exc))
        return 1
    health = HealthServer(args.metrics_address, args.metrics_port)
    speaker.health(health)
    health.start()
    speaker.start()
    while not stop.wait(1.0):
        pass
    speaker.stop()
    health.stop()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
