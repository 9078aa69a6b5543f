"""The netns lab built for real: links, addresses, reachability, pod routing, coexistence, cleanup (root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab import network
from lab.network import NetworkError
from lab.runner import Lab, LabError
from lab.topology import load_topology

from .conftest import REPO, LabFactory, lab_cli, lab_leftovers, ns_run, pings, topology_copy

pytestmark = pytest.mark.root


def addresses(netns: str, dev: str) -> set[str]:
    out = ns_run(netns, "ip", "-j", "addr", "show", "dev", dev, check=True).stdout
    return {f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link["addr_info"]}


def routes(netns: str, family: str) -> list[dict[str, str]]:
    out = ns_run(netns, "ip", "-j", family, "route", "show", check=True).stdout
    result: list[dict[str, str]] = json.loads(out)
    return result


def test_up_builds_the_planned_links_and_addresses(lab_network: Lab):
    plan = lab_network.plan
    prefix = plan.prefix
    assert set(network.list_netns(prefix)) == set(plan.netns_names)
    host_links = set(network.list_host_links(prefix))
    assert host_links == {plan.mgmt_bridge, *(n.host_veth for n in plan.nodes)}
    shown = subprocess.run(
        ["ip", "-j", "addr", "show", "dev", plan.mgmt_bridge], capture_output=True, text=True, check=True
    ).stdout
    mgmt_addrs = {
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(shown)
        for a in link["addr_info"]
        if a["scope"] == "global"
    }
    assert mgmt_addrs == {str(plan.mgmt_gateway4), str(plan.mgmt_gateway6)}

    # The segment bridge in the switch netns has one port per node.
    shown = ns_run(plan.switch_netns, "ip", "-j", "link", "show", "master", "ilb-seg", check=True).stdout
    ports = sorted(p["ifname"] for p in json.loads(shown))
    assert ports == ["ilb-client-e1", "ilb-node1-e1", "ilb-node2-e1", "ilb-node3-e1"]

    for node in plan.nodes:
        assert {str(node.ipv4), str(node.ipv6)} <= addresses(node.netns, "eth1")
        assert {str(node.mgmt_ipv4), str(node.mgmt_ipv6)} <= addresses(node.netns, "eth0")
        # Lab traffic never leaves the machine: no default route in any node.
        for family in ("-4", "-6"):
            assert not [r for r in routes(node.netns, family) if r["dst"] == "default"]
    node1 = plan.node("node1")
    assert {"10.244.1.1/24", "fd00:244:1::1/64"} <= addresses(node1.netns, "cbr0")
    v4 = {r["dst"]: r.get("gateway") for r in routes(node1.netns, "-4")}
    assert v4["10.244.2.0/24"] == "192.168.10.12" and v4["10.244.3.0/24"] == "192.168.10.13"
    v6 = {r["dst"]: r.get("gateway") for r in routes(node1.netns, "-6")}
    assert v6["fd00:244:2::/64"] == "fd00:10::12" and v6["fd00:244:3::/64"] == "fd00:10::13"
    keys = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
    forwarding = ns_run(node1.netns, "sysctl", "-n", *keys).stdout
    assert forwarding.split() == ["1", "1"]
    client = plan.node("client")
    assert ns_run(client.netns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"


def test_nodes_reach_each_other_over_ipv4_and_ipv6(lab_network: Lab):
    plan = lab_network.plan
    failures = []
    for node in plan.nodes:
        targets = [str(plan.mgmt_gateway4.ip), str(plan.mgmt_gateway6.ip) if plan.mgmt_gateway6 else ""]
        for peer in plan.nodes:
            if peer is not node:
                targets += [str(peer.ipv4.ip), str(peer.ipv6.ip), str(peer.mgmt_ipv4.ip)]  # type: ignore[union-attr]
        failures += [f"{node.name}->{t}" for t in targets if t and not pings(node.netns, t)]
    assert failures == []


def attach_test_pod(lab: Lab, node_name: str, host_index: int) -> tuple[str, str, str]:
    """A netns on the node's pod bridge, like a pod the kubelet would make; named with the lab prefix so
    `down` removes it. Returns (netns, ipv4, ipv6)."""
    node = lab.plan.node(node_name)
    assert node.pod_cidr is not None and node.pod_cidr6 is not None
    netns = f"{lab.plan.prefix}-p-test{host_index}"
    ip4 = str(node.pod_cidr.network_address + host_index)
    ip6 = str(node.pod_cidr6.network_address + host_index)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    network.ip_batch([f"link add eth0 netns {netns} type veth peer name vtest{host_index}"], netns=node.netns)
    port = f"vtest{host_index}"
    network.ip_batch([f"link set {port} master cbr0", f"link set {port} up"], netns=node.netns)
    network.set_sysctls(netns, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.eth0.accept_dad": "0"})
    network.ip_batch(
        [
            "link set lo up",
            "link set eth0 up",
            f"addr add {ip4}/{node.pod_cidr.prefixlen} dev eth0",
            f"addr add {ip6}/{node.pod_cidr6.prefixlen} dev eth0 nodad",
            f"route add default via {node.pod_gateway4.ip}",  # type: ignore[union-attr]
            f"route add default via {node.pod_gateway6.ip}",  # type: ignore[union-attr]
        ],
        netns=netns,
    )
    return netns, ip4, ip6


def test_pod_cidrs_are_routed_between_nodes(lab_network: Lab):
    pod1, pod1_v4, pod1_v6 = attach_test_pod(lab_network, "node1", 10)
    pod3, pod3_v4, pod3_v6 = attach_test_pod(lab_network, "node3", 20)
    plan = lab_network.plan
    for node in ("node1", "node2", "node3"):
        netns = plan.node(node).netns
        for target in (pod1_v4, pod1_v6, pod3_v4, pod3_v6):
            assert pings(netns, target), f"{node} -> {target}"
    # Pod to pod across nodes, both families.
    assert pings(pod1, pod3_v4) and pings(pod1, pod3_v6)
    assert pings(pod3, pod1_v4) and pings(pod3, pod1_v6)
    # The client is outside the cluster: it has no route to pods.
    assert not pings(plan.node("client").netns, pod1_v4)


def test_two_labs_coexist(lab_factory: LabFactory):
    big = lab_factory.up("default")
    small = lab_factory.up("mini")
    assert not set(network.list_netns(big.plan.prefix)) & set(network.list_netns(small.plan.prefix))
    assert pings(big.plan.node("node1").netns, "192.168.10.12")
    assert pings(small.plan.node("node1").netns, "192.168.20.12")
    # Same addresses in both labs do not clash: each lab's segment is its own.
    assert pings(big.plan.node("node2").netns, str(big.plan.mgmt_gateway4.ip))
    assert pings(small.plan.node("node2").netns, str(small.plan.mgmt_gateway4.ip))
    small.down()
    assert lab_leftovers(small) == []
    assert set(network.list_netns(big.plan.prefix)) == set(big.plan.netns_names)
    assert pings(big.plan.node("node3").netns, "fd00:10::11")


def test_down_leaves_no_namespace_link_process_or_file(lab_factory: LabFactory):
    lab = lab_factory.up("default")
    attach_test_pod(lab, "node2", 30)
    # A process inside a node, one inside the pod netns, and one that only carries the lab's state dir on its
    # command line (what a kubelet or API server looks like to the sweep).
    inside = subprocess.Popen(["ip", "netns", "exec", lab.plan.node("node1").netns, "sleep", "300"])
    in_pod = subprocess.Popen(["ip", "netns", "exec", f"{lab.plan.prefix}-p-test30", "sleep", "300"])
    marked = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", str(lab.paths.state_dir / "kubeconfig")]
    )
    # And one in the host netns that names a lab namespace as an argument (like a kubelet's --netns).
    naming = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "--netns", lab.plan.node("node3").netns]
    )
    (lab.paths.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    (lab.paths.state_dir / "logs" / "extra.log").write_text("x")
    try:
        # `ip netns exec` enters the namespace, then execs sleep: only then is the process the lab's to find.
        for proc in (inside, in_pod):
            deadline = time.monotonic() + 30
            while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep":
                assert proc.poll() is None and time.monotonic() < deadline, "ip netns exec never ran sleep"
                time.sleep(0.05)
        assert lab_leftovers(lab)
        lab.down()
        for proc in (inside, in_pod, marked, naming):
            assert proc.wait(timeout=5) is not None
        assert lab_leftovers(lab) == []
        netns_out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert lab.plan.prefix not in netns_out
        links_out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert f"{lab.plan.prefix}-" not in links_out
        ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True).stdout
        marks = (str(lab.paths.state_dir), lab.plan.prefix)
        assert not [line for line in ps.splitlines() if any(m in line for m in marks)]
        assert not lab.paths.state_dir.exists()
        # Idempotent.
        assert lab.down() == []
    finally:
        for proc in (inside, in_pod, marked, naming):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_up_is_idempotent_and_refuses_a_partial_lab(lab_factory: LabFactory):
    lab = lab_factory.up("mini")
    assert lab.up(network_only=True) == "already-up"
    with pytest.raises(LabError, match="already up with network_only=True"):
        lab.up(network_only=False)
    subprocess.run(["ip", "netns", "del", lab.plan.node("node2").netns], check=True)
    assert lab.health()[0] == "partial"
    with pytest.raises(LabError, match=r"partially up .*netns ilbt\w+-node2 missing.*`python -m lab down`"):
        lab.up(network_only=True)
    lab.down()
    assert lab_leftovers(lab) == []
    assert lab.up(network_only=True) == "started"


def test_mgmt_subnet_clash_fails_cleanly(lab_factory: LabFactory, tmp_path: Path):
    first = lab_factory.up("mini")
    clash_file, _ = topology_copy(tmp_path, "mini")
    text = clash_file.read_text()
    mgmt = first.plan.mgmt_gateway4.network
    clash_file.write_text(text.replace(text.split("ipv4-subnet: ")[1].split("\n")[0], str(mgmt)))
    second = Lab(load_topology(clash_file), state_root=lab_factory.state_root)
    lab_factory.labs.append(second)
    with pytest.raises(NetworkError, match=f"mgmt subnet {mgmt} overlaps the host route"):
        second.up(network_only=True)
    assert lab_leftovers(second) == []
    assert first.health()[0] == "up"


def test_cli_up_status_exec_down(tmp_path: Path, lab_factory: LabFactory):
    topo, prefix = topology_copy(tmp_path, "default")
    lab = Lab(load_topology(topo), state_root=tmp_path / "cli-state")
    lab_factory.labs.append(lab)
    common = ["--topology", str(topo), "--state-root", str(tmp_path / "cli-state")]
    began = time.monotonic()
    up = lab_cli("up", "--network-only", *common)
    elapsed = time.monotonic() - began
    assert up.returncode == 0, up.stderr
    assert "is up" in up.stdout and f"netns={prefix}-node1" in up.stdout
    assert elapsed < 10, f"up took {elapsed:.1f}s"
    status = lab_cli("status", "--json", *common)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["status"] == "up" and data["prefix"] == prefix and len(data["nodes"]) == 4
    exe = lab_cli("exec", "node2", *common, "--", "ip", "-j", "addr", "show", "dev", "eth1")
    assert exe.returncode == 0, exe.stderr
    assert "192.168.10.12" in exe.stdout
    rc = lab_cli("exec", "client", *common, "--", "sh", "-c", "exit 7")
    assert rc.returncode == 7
    bad = lab_cli("exec", "nosuch", *common, "--", "true")
    assert bad.returncode == 2 and "no node 'nosuch'" in bad.stderr
    assert lab_cli("down", *common).returncode == 0
    assert lab_cli("status", *common).returncode == 3
    gone = lab_cli("exec", "node1", *common, "--", "true")
    assert gone.returncode == 3 and "is not up" in gone.stderr
    assert lab_leftovers(lab) == []
    assert lab_cli("down", *common).returncode == 0


def test_cli_reports_bad_topology(tmp_path: Path):
    bad = tmp_path / "bad.clab.yml"
    bad.write_text("name: x\ntopology:\n  nodes:\n    n1: {kind: vr-sros}\n")
    result = lab_cli("up", "--network-only", "--topology", str(bad), "--state-root", str(tmp_path / "s"))
    assert result.returncode == 1
    assert "kind 'vr-sros' is not supported" in result.stderr and "Traceback" not in result.stderr
    assert network.list_netns("x") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_foreground_up_cleans_up_on_signal(tmp_path: Path, lab_factory: LabFactory, sig: signal.Signals):
    topo, _ = topology_copy(tmp_path, "mini")
    state_root = tmp_path / "fg-state"
    lab = Lab(load_topology(topo), state_root=state_root)
    lab_factory.labs.append(lab)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "--network-only", "--foreground", "--topology", str(topo),
         "--state-root", str(state_root)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("holding the lab"):
                break
        assert lab.health()[0] == "up"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "is down" in out
        assert lab_leftovers(lab) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fixture_cleans_up_after_a_failing_test(tmp_path: Path):
    """A test that fails (or errors) while holding a lab leaves nothing behind: the fixture's finally runs."""
    marker = tmp_path / "lab-state-root.txt"
    test_file = tmp_path / "test_inner_failure.py"
    test_file.write_text(
        textwrap.dedent(f"""
        import pytest, subprocess
        from pathlib import Path

        def test_fails_with_a_lab(lab_factory):
            lab = lab_factory.up("mini")
            Path({str(marker)!r}).write_text(lab.plan.prefix + " " + str(lab.paths.state_dir))
            subprocess.Popen(["ip", "netns", "exec", lab.plan.node("node1").netns, "sleep", "300"])
            assert False, "deliberate failure"
    """)
    )
    plugin = "tests.lab.conftest"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", plugin, "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(test_file)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deliberate failure" in result.stdout
    prefix, state_dir = marker.read_text().split()
    assert network.list_netns(prefix) == [] and network.list_host_links(prefix) == []
    assert not Path(state_dir).exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in ps.splitlines() if prefix in line or state_dir in line]
