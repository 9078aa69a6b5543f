"""Failover in the lab (root): the owner's speaker killed, its link cut, stopped with SIGTERM or cut off from
its peers; externalTrafficPolicy Local. The client sees the gratuitous announcements and its neighbour entry
moves without waiting for its own timeout."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controller.helpers import apply, events, service, wait_for, wait_ips
from tests.lab.conftest import ns_run
from tests.speaker.helpers import NODES, SpeakerLab, deployment, ready_endpoints
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

POOLS = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: dual, namespace: metallb-system}
spec:
  addresses: [192.168.10.80-192.168.10.89, fd00:10::80-fd00:10::8f]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: dual, namespace: metallb-system}
spec:
  ipAddressPools: [dual]
"""
V4 = "192.168.10.80"
V6 = "fd00:10::80"


@pytest.fixture(scope="module")
def dual(speaker_lab: SpeakerLab) -> str:
    """A dual-stack Service on the dual pool; returns its name."""
    kubectl = speaker_lab.kubectl
    apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    apply(kubectl, POOLS)
    apply(kubectl, deployment("web", replicas=3))
    annotations = {"metallb.io/loadBalancerIPs": f"{V4},{V6}"}
    apply(
        kubectl,
        service(
            "web", annotations=annotations, ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"]
        ),
    )
    assert sorted(wait_ips(kubectl, "web", timeout=30)) == [V4, V6]
    return "web"


@pytest.fixture
def all_speakers(speaker_lab: SpeakerLab) -> Iterator[SpeakerLab]:
    """Every speaker running before the test and again after it (a test kills some)."""
    for speaker in speaker_lab.speakers.values():
        if not speaker.alive():
            speaker.start()
    yield speaker_lab
    for speaker in speaker_lab.speakers.values():
        if not speaker.alive():
            speaker.start()


def owner_of(speaker_lab: SpeakerLab, ip: str, *not_these: str, timeout: float = 20) -> str:
    """Wait until exactly one node answers for ``ip`` (and it is none of ``not_these``); that node."""
    probe = speaker_lab.ndisc6 if ":" in ip else speaker_lab.arping

    def single() -> str | None:
        macs = probe(ip)
        node = speaker_lab.node_of(macs[0]) if len(macs) == 1 else None
        return node if node is not None and node not in not_these else None

    return wait_for(f"one node answering for {ip}, not {not_these}", single, timeout)


class Capture:
    """tcpdump in the client's namespace, its output in a file; stopped by PID."""

    def __init__(self, speaker_lab: SpeakerLab, path: Path) -> None:
        self.path = path
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    speaker_lab.client,
                    "tcpdump",
                    "-l",
                    "--immediate-mode",  # each packet as it comes, not in blocks of up to a second
                    "-nn",
                    "-e",
                    "-i",
                    "eth1",
                    "arp or icmp6",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for("tcpdump listening", lambda: "listening on" in path.read_text(errors="replace"))

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def gratuitous_times(capture: Capture, mac: str, ip: str) -> list[float]:
    """When the capture saw ``mac`` announce ``ip`` unasked (seconds of the day): a broadcast ARP request
    from ``ip`` for itself, or an unsolicited NA to all nodes."""
    times = []
    for line in capture.text().splitlines():
        if f" {mac} >" not in line.lower():
            continue
        if (
            f"Request who-has {ip} tell {ip}" in line
            or f"Request who-has {ip} (00:00:00:00:00:00) tell {ip}" in line
            or ("neighbor advertisement" in line and f"tgt is {ip}" in line and "ff02::1" in line)
        ):
            hours, minutes, seconds = line.split()[0].split(":")
            times.append(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    return times


def gratuitous_from(capture: Capture, mac: str, ip: str) -> bool:
    return bool(gratuitous_times(capture, mac, ip))


def repeated_as_metallb_does(capture: Capture, mac: str, ip: str) -> None:
    """At once, then every 1.1 s for 5 s: five announcements about 1.1 s apart, and then no more."""

    def five() -> list[float] | None:
        times = gratuitous_times(capture, mac, ip)
        return times if len(times) >= 5 else None

    wait_for(f"five announcements of {ip}", five, timeout=10)
    time.sleep(1.5)  # a sixth would be due by now
    times = gratuitous_times(capture, mac, ip)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) == 5 and all(1.0 <= gap <= 2.0 for gap in gaps), (ip, times)


def moved(lab: SpeakerLab, ip: str, old_mac: str) -> str | None:
    mac = lab.neighbour(ip)
    return mac if mac not in (None, old_mac) else None


def make_neighbour_entries(speaker_lab: SpeakerLab) -> None:
    """Let the client's kernel resolve both IPs afresh (nothing answers the pings: no dataplane here). An
    earlier test may have left an entry it would only re-check in seconds: flush it first."""
    for ip, family in ((V4, "-4"), (V6, "-6")):
        ns_run(speaker_lab.client, "ip", family, "neigh", "flush", "to", ip, "dev", "eth1")
        ns_run(speaker_lab.client, "ping", family, "-c", "1", "-W", "1", ip)


def test_owner_killed_another_node_answers_and_the_client_moves_at_once(
    all_speakers: SpeakerLab, dual: str, tmp_path: Path
) -> None:
    lab = all_speakers
    owner4 = owner_of(lab, V4)
    owner6 = owner_of(lab, V6)
    make_neighbour_entries(lab)
    assert lab.neighbour(V4) == lab.mac(owner4) and lab.neighbour(V6) == lab.mac(owner6)
    victims = {owner4, owner6}
    capture = Capture(lab, tmp_path / "tcpdump.txt")
    try:
        for victim in victims:
            lab.speakers[victim].kill()
        # No traffic from the client now: only the new owners' announcements can move its entries.
        new4 = wait_for("the IPv4 entry to move", lambda: moved(lab, V4, lab.mac(owner4)))
        new6 = wait_for("the IPv6 entry to move", lambda: moved(lab, V6, lab.mac(owner6)))
        repeated_as_metallb_does(capture, new4, V4)
        repeated_as_metallb_does(capture, new6, V6)
    finally:
        capture.stop()
    assert owner_of(lab, V4) == lab.node_of(new4) not in victims
    assert owner_of(lab, V6) == lab.node_of(new6) not in victims
    lab.wait_status(dual, sorted({lab.node_of(new4), lab.node_of(new6)}))


def test_owner_link_cut_another_node_answers_and_it_comes_back(
    all_speakers: SpeakerLab, dual: str, tmp_path: Path
) -> None:
    lab = all_speakers
    owner = owner_of(lab, V4)
    make_neighbour_entries(lab)
    assert lab.neighbour(V4) == lab.mac(owner)
    netns = lab.netns(owner)
    capture = Capture(lab, tmp_path / "tcpdump.txt")
    ns_run(netns, "ip", "link", "set", "eth1", "down", check=True)
    try:
        new = wait_for("the IPv4 entry to move", lambda: moved(lab, V4, lab.mac(owner)))
        wait_for("the announcement in the capture", lambda: gratuitous_from(capture, new, V4), timeout=5)
        successor = owner_of(lab, V4, owner)
        assert lab.mac(successor) == new
    finally:
        capture.stop()
        ns_run(netns, "ip", "link", "set", "eth1", "up", check=True)
    # Back on the segment: it rejoins (a higher incarnation), wins its IP back, the successor lets go.
    assert owner_of(lab, V4, successor, timeout=30) == owner
    assert "event=interface_state interface=eth1 up=false" in lab.speakers[owner].log()
    assert lab.speakers[owner].alive()


def test_sigterm_hands_over_at_once(all_speakers: SpeakerLab, dual: str, tmp_path: Path) -> None:
    lab = all_speakers
    owner = owner_of(lab, V4)
    capture = Capture(lab, tmp_path / "tcpdump.txt")
    try:
        started = time.monotonic()
        lab.speakers[owner].signal(signal.SIGTERM)
        successor = owner_of(lab, V4, owner, timeout=10)
        waited = time.monotonic() - started
        wait_for(
            "the announcement in the capture",
            lambda: gratuitous_from(capture, lab.mac(successor), V4),
            timeout=5,
        )
    finally:
        capture.stop()
    proc = lab.speakers[owner].proc
    assert proc is not None and proc.wait(10) == 0
    log = lab.speakers[owner].log()
    assert "event=stopping" in log and "event=stopped" in log
    # The others learn it left from its goodbye, not from a timeout.
    assert f"event=member_down member={owner} status=left" in lab.speakers[successor].log()
    assert waited < 5, waited


def test_a_node_cut_off_from_its_peers_stops_answering(all_speakers: SpeakerLab, dual: str) -> None:
    lab = all_speakers
    owner = owner_of(lab, V4)
    netns = lab.netns(owner)
    rules = [("INPUT", "--dport"), ("OUTPUT", "--dport")]
    for chain, port in rules:
        ns_run(netns, "iptables", "-I", chain, "-p", "udp", port, "7946", "-j", "DROP", check=True)
    try:
        # Cut off from the membership but not from the clients: it must not keep a second MAC answering.
        successor = owner_of(lab, V4, owner)
        assert lab.arping(V4) == [lab.mac(successor)]
        log = lab.speakers[owner].log()
        assert "event=isolation isolated=true" in log and "event=standing announce=false" in log
    finally:
        for chain, port in rules:
            ns_run(netns, "iptables", "-D", chain, "-p", "udp", port, "7946", "-j", "DROP")
    assert owner_of(lab, V4, successor, timeout=30) == owner


def test_traffic_policy_local_follows_the_endpoints(all_speakers: SpeakerLab) -> None:
    lab = all_speakers
    kubectl = lab.kubectl
    apply(kubectl, deployment("local", replicas=1))
    apply(
        kubectl,
        service(
            "local",
            annotations={"metallb.io/loadBalancerIPs": "192.168.10.94"},
            externalTrafficPolicy="Local",
        ),
    )
    first = wait_for("a ready endpoint", lambda: ready_endpoints(kubectl, "local"), timeout=30)[0]
    assert owner_of(lab, "192.168.10.94") == first, "only a node with a ready local endpoint announces"
    cordoned = ""
    try:
        # The endpoint goes away from that node (cordoned, its pod deleted): the IP follows the new one.
        kubectl("cordon", first)
        cordoned = first
        kubectl("delete", "pod", "-l", "app=local", "--wait=false")

        def elsewhere() -> str | None:
            nodes = ready_endpoints(kubectl, "local")
            return nodes[0] if nodes and nodes[0] != first else None

        second = wait_for("the endpoint elsewhere", elsewhere, timeout=30)
        assert owner_of(lab, "192.168.10.94", first) == second
        lab.wait_status("local", [second])
        # No ready endpoint anywhere: nobody answers, and no status claims a node.
        kubectl("scale", "deployment", "local", "--replicas=0")
        wait_for("nobody answering", lambda: lab.arping("192.168.10.94") == [])
        lab.wait_status("local", [])
    finally:
        if cordoned:
            kubectl("uncordon", cordoned, check=False)
        kubectl("delete", "service", "local", check=False)


def test_every_speaker_agrees_and_nodes_have_their_own_lease(all_speakers: SpeakerLab, dual: str) -> None:
    """The Leases that say which speakers exist, and the MACs they publish for conflict detection."""
    leases = json.loads(all_speakers.kubectl("get", "leases", "-n", "metallb-system", "-o", "json").stdout)
    ours = [lease for lease in leases["items"] if lease["metadata"]["name"].startswith("ironlb-speaker-")]
    holders = {lease["spec"]["holderIdentity"]: lease for lease in ours}
    assert set(holders) == set(NODES)
    for node in NODES:
        assert all_speakers.mac(node) in holders[node]["metadata"]["annotations"]["ironlb.io/macs"]
    # With those MACs, no hand-over in this module (kills, link cuts, SIGTERM, a partition) looked like a
    # conflict: a speaker's MAC announcing an IP is never another host's.
    for name in ("web", "local"):
        assert not events(all_speakers.kubectl, name, reason="IPConflict")
    for speaker in all_speakers.speakers.values():
        assert "event=ip_conflict" not in speaker.log()
