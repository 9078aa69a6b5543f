"""IPVS in NAT (masquerade) mode inside the user-mode-linux guest: one virtual server, two real servers.

The real servers are lab echo servers in their own network namespaces, each behind a veth pair to the guest's
root namespace, which is both the IPVS director and the client (as a node is for kube-proxy's IPVS mode):
the virtual IP sits on a dummy interface, as on kube-proxy's kube-ipvs0. Only collected inside the guest
(tests/guest/conftest.py); tests/uml/test_uml_runner.py runs it through lab.uml.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from socket import IPPROTO_TCP

import pytest

PREFIX = "ilbt-"
VIP = "10.99.0.10"
PORT = 80
# name -> (director-side address, real-server address), one /24 per real server.
REAL_SERVERS = {"rs1": ("10.99.1.1", "10.99.1.2"), "rs2": ("10.99.2.1", "10.99.2.2")}
VIP_LINK = f"{PREFIX}ipvs0"
REQUESTS = 8


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def curl(address: str) -> str:
    return run("curl", "-sS", "--max-time", "3", f"http://{address}:{PORT}/").strip()


@pytest.fixture
def real_servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two namespaces each running `python -m lab.echoserver --name rsN --tcp 80`; yields name -> address."""
    # Explicit, so a broken modprobe wrapper shows up here with modprobe's own message.
    run("modprobe", "ip_vs")
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for name, (director_ip, rs_ip) in REAL_SERVERS.items():
            netns = f"{PREFIX}{name}"
            host_link = f"{PREFIX}{name}h"
            run("ip", "netns", "add", netns)
            run("ip", "link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns", netns)
            run("ip", "addr", "add", f"{director_ip}/24", "dev", host_link)
            run("ip", "link", "set", host_link, "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
            run("ip", "-n", netns, "addr", "add", f"{rs_ip}/24", "dev", "eth0")
            run("ip", "-n", netns, "link", "set", "eth0", "up")
            # NAT mode needs replies to come back through the director.
            run("ip", "-n", netns, "route", "add", "default", "via", director_ip)
            ready = tmp_path / f"{name}.ready"
            servers.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        netns,
                        sys.executable,
                        "-m",
                        "lab.echoserver",
                        "--name",
                        name,
                        "--tcp",
                        str(PORT),
                        "--ready-file",
                        str(ready),
                    ],
                )
            )
        run("ip", "link", "add", VIP_LINK, "type", "dummy")
        run("ip", "addr", "add", f"{VIP}/32", "dev", VIP_LINK)
        run("ip", "link", "set", VIP_LINK, "up")
        deadline = time.monotonic() + 20
        for name in REAL_SERVERS:
            while not (tmp_path / f"{name}.ready").exists():
                assert time.monotonic() < deadline, f"echo server {name} never became ready"
                assert all(s.poll() is None for s in servers), "an echo server exited early"
                time.sleep(0.05)
        yield {name: rs_ip for name, (_, rs_ip) in REAL_SERVERS.items()}
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for name in REAL_SERVERS:
            subprocess.run(["ip", "netns", "del", f"{PREFIX}{name}"], capture_output=True)
        subprocess.run(["ip", "link", "del", VIP_LINK], capture_output=True)


def test_ipvs_nat_virtual_server_answers_from_both_real_servers(real_servers: dict[str, str]) -> None:
    from pyroute2 import IPVS, IPVSDest, IPVSService

    # Each real server answers directly first, so a failure below is IPVS's, not the lab's.
    for name, address in real_servers.items():
        assert curl(address).split()[0] == name

    service = IPVSService(addr=VIP, port=PORT, protocol=IPPROTO_TCP, sched_name="rr")
    with IPVS() as ipvs:
        ipvs.service("add", service=service)
        try:
            for address in real_servers.values():
                # fwd_method 0 is masquerading (NAT); pyroute2's default, 3, is direct routing.
                ipvs.dest("add", service=service, dest=IPVSDest(addr=address, port=PORT, fwd_method=0))

            # ipvsadm reads the table back independently of pyroute2 (whose dest dump misreports fwd_method).
            table = run("ipvsadm", "-Ln", "-t", f"{VIP}:{PORT}")
            assert table.count("Masq") == 2, table
            for address in real_servers.values():
                assert f"{address}:{PORT}" in table, table

            replies = [curl(VIP) for _ in range(REQUESTS)]
        finally:
            with contextlib.suppress(Exception):
                ipvs.service("del", service=service)

    answered = Counter(reply.split()[0] for reply in replies)
    assert set(answered) == set(real_servers), replies
    # Round robin over two real servers: an even split.
    assert answered == Counter(dict.fromkeys(real_servers, REQUESTS // 2)), replies
    # NAT keeps the client's address: the real servers saw the VIP-sourced local client, not the director's
    # real-server-facing address.
    assert all(reply.split()[1].split(":")[0] == VIP for reply in replies), replies
