"""`python -m lab.apiserver --port P --data-dir D --kubeconfig-out K [--bind-address A ...] [--tls-san S ...]`

Prints exactly one line on stdout once it serves:
`ironlb-apiserver ready url=https://127.0.0.1:PORT kubeconfig=K`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from lab.apiserver import kubeconfig, pki, rbac, serviceaccounts
from lab.apiserver.admission import Admission
from lab.apiserver.api import Api
from lab.apiserver.persistence import FileJournal
from lab.apiserver.resources import Registry
from lab.apiserver.server import ApiServer, ServerConfig
from lab.apiserver.store import Store

log = logging.getLogger("ironlb.apiserver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lab.apiserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=6443, help="HTTPS port; 0 picks a free one")
    p.add_argument("--data-dir", type=Path, help="persist objects, PKI and tokens here (default: in memory)")
    p.add_argument(
        "--kubeconfig-out", type=Path, help="write an admin kubeconfig here (default: DATA_DIR/kubeconfig)"
    )
    p.add_argument("--bind-address", action="append", default=[], help="address to listen on (repeatable)")
    p.add_argument(
        "--tls-san", action="append", default=[], help="extra serving-certificate SAN (repeatable)"
    )
    p.add_argument(
        "--advertise-address",
        help="the address the default/kubernetes Endpoints name (default: the first bind address that is "
        "neither loopback nor unspecified, else the first bind address)",
    )
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-cluster-ip-range-v6", default=None)
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument(
        "--watch-bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks"
    )
    p.add_argument("--history-size", type=int, default=10000, help="watch events kept per resource")
    p.add_argument("--compact-every", type=int, default=50000, help="journal records between snapshots")
    p.add_argument(
        "--fsync", action="store_true", help="fsync the journal at every write (survives power loss)"
    )
    p.add_argument(
        "--token-auth-file",
        type=Path,
        help='more bearer tokens, kube-apiserver\'s static token format: token,user,uid,"group1,group2"',
    )
    p.add_argument(
        "--authorization-mode",
        choices=("AlwaysAllow", "RBAC"),
        default="AlwaysAllow",
        help="RBAC: only system:masters and what stored Roles/ClusterRoles bound to a user grant",
    )
    p.add_argument(
        "--pod-log-dir",
        type=Path,
        help="where the lab kubelets write container output (lab.podlogs): serves `kubectl logs`",
    )
    p.add_argument(
        "--log-level", default="WARNING", help="DEBUG logs every request; INFO start-up and lifecycle"
    )
    return p.parse_args(argv)


def _make_admission(args: argparse.Namespace) -> Admission:
    text = str(args.service_node_port_range)
    low_text, _, high_text = text.partition("-")
    if not (low_text.isdigit() and high_text.isdigit() and 0 < int(low_text) <= int(high_text) <= 65535):
        raise ValueError(f"--service-node-port-range {text!r}: expected LOW-HIGH, e.g. 30000-32767")
    low, high = int(low_text), int(high_text)
    return Admission(
        service_cidr=args.service_cluster_ip_range,
        node_port_range=(low, high),
        service_cidr_v6=args.service_cluster_ip_range_v6,
    )


def load_tokens(data_dir: Path | None, token_auth_file: Path | None = None) -> dict[str, rbac.UserInfo]:
    """DATA_DIR/tokens.csv (the admin token, made at first start) plus --token-auth-file, both in
    kube-apiserver's static token file format (token,user,uid[,"groups"])."""
    tokens: dict[str, rbac.UserInfo] = {}
    if data_dir is not None:
        path = data_dir / "tokens.csv"
        if not path.exists():
            token = secrets.token_hex(24)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f'{token},admin,admin,"system:masters"\n')
        tokens.update(rbac.load_token_file(path))
    if token_auth_file is not None:
        tokens.update(rbac.load_token_file(token_auth_file))
    return tokens


def _listen(addresses: list[str], port: int) -> list[socket.socket]:
    """Bind every address on one port (port 0: the first bind picks it for all)."""
    socks: list[socket.socket] = []
    for addr in addresses:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s.bind((addr, port))
        except OSError as exc:
            s.close()
            raise OSError(f"cannot listen on {addr} port {port}: {exc.strerror}") from exc
        s.listen(512)
        s.setblocking(False)
        port = s.getsockname()[1]
        socks.append(s)
    return socks


def _ssl_context(material: pki.Pki) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="ironlb-apiserver-") as tmp:
        cert, key, ca = Path(tmp) / "tls.crt", Path(tmp) / "tls.key", Path(tmp) / "ca.crt"
        cert.write_bytes(material.server_cert_pem)
        key.write_bytes(material.server_key_pem)
        ca.write_bytes(material.ca_cert_pem)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=str(ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates; a bearer token also does
    return ctx


def _lock_data_dir(data_dir: Path, wait: float = 10.0) -> int:
    """One server per data dir: two journals appending to one file would corrupt it. A predecessor still
    shutting down gets `wait` seconds to release the lock."""
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise SystemExit(f"ironlb-apiserver: {data_dir} is in use by another API server") from None
            time.sleep(0.05)


def advertised_address(binds: list[str]) -> str:
    """What the kubernetes Service's endpoints name when no --advertise-address is given."""
    for bind in binds:
        ip = ipaddress.ip_address(bind)
        if not (ip.is_loopback or ip.is_unspecified):
            return bind
    return "127.0.0.1" if ipaddress.ip_address(binds[0]).is_unspecified else binds[0]


async def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    data_dir: Path | None = args.data_dir
    lock: int | None = None
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_data_dir(data_dir)
    binds: list[str] = args.bind_address or ["127.0.0.1"]
    material = pki.load_or_create(data_dir / "pki" if data_dir else None, binds + list(args.tls_san))
    tokens = load_tokens(data_dir, args.token_auth_file)
    signing_key = serviceaccounts.load_or_create_key(data_dir / "pki" if data_dir else None)
    issuer = serviceaccounts.TokenIssuer(signing_key)

    store = Store(history_size=args.history_size)
    journal: FileJournal | None = None
    if data_dir is not None:
        journal = FileJournal(data_dir, fsync=args.fsync, compact_every=args.compact_every)
        replayed = journal.load(store)
        log.info("event=restored rv=%d journal_records=%d", store.rv, replayed)
        store.journal = journal
    registry = Registry()
    api = Api(
        store,
        registry,
        _make_admission(args),
        after_write=journal.maybe_compact if journal is not None else None,
    )
    api.start()

    socks = _listen(binds, args.port)
    port = socks[0].getsockname()[1]
    host = "127.0.0.1" if binds[0] in ("0.0.0.0", "::") else binds[0]
    url_host = f"[{host}]" if ":" in host else host
    url = f"https://{url_host}:{port}"
    api.reconcile_kubernetes_endpoints(args.advertise_address or advertised_address(binds), port)
    server = ApiServer(
        api,
        ServerConfig(
            tokens=tokens,
            bookmark_interval=args.watch_bookmark_interval,
            server_address=f"{url_host}:{port}",
            authorization_mode=args.authorization_mode,
            token_issuer=issuer,
            pod_log_dir=args.pod_log_dir,
        ),
    )
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    ctx = _ssl_context(material)
    for s in socks:
        await web.SockSite(runner, s, ssl_context=ctx).start()

    kubeconfig_out: Path | None = args.kubeconfig_out or (data_dir / "kubeconfig" if data_dir else None)
    if kubeconfig_out is not None:
        kubeconfig.write(
            kubeconfig_out,
            kubeconfig.render(url, material.ca_cert_pem, material.client_cert_pem, material.client_key_pem),
        )
    log.info(
        "event=ready url=%s startup_ms=%.0f objects_rv=%d", url, (time.monotonic() - started) * 1000, store.rv
    )
    print(f"ironlb-apiserver ready url={url} kubeconfig={kubeconfig_out or ''}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("event=stopping")
    server.close_watches()
    with contextlib.suppress(Exception):
        await runner.cleanup()
    if journal is not None:
        journal.close()
    if lock is not None:
        os.close(lock)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(serve(args))
    except (ValueError, OSError) as exc:
        # Bad flags (a malformed range or CIDR) or an unusable address/port: one clear line, no traceback.
        print(f"ironlb-apiserver: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
