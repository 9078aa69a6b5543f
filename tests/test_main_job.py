"""The README's main job, run as a user runs it (root).

`scripts/demo.sh` builds the lab, installs ironlb from its manifests, applies the tutorial's objects and
shows, from the client, the EXTERNAL-IP answering, the NodePort on every node, ClientIP affinity, a speaker
failover with its gap and a dataplane mode switch under a live connection; `scripts/demo.sh down` leaves
nothing behind. It runs on a copy of the default topology with its own prefix (IRONLB_LAB_TOPOLOGY), so a
default lab someone has up on this machine is never touched.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.lab.conftest import topology_copy

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.root, pytest.mark.timeout(360)]


def test_demo_answers_the_client_fails_over_switches_mode_and_down_removes_everything(tmp_path: Path) -> None:
    topology, prefix = topology_copy(tmp_path)
    env = dict(os.environ, IRONLB_LAB_STATE_ROOT=str(tmp_path / "state"), IRONLB_LAB_TOPOLOGY=str(topology))
    demo = [str(REPO / "scripts" / "demo.sh")]
    try:
        up = subprocess.run(demo, capture_output=True, text=True, env=env, timeout=300)
        out = re.sub(r"\x1b\[[0-9;]*m", "", up.stdout)
        assert up.returncode == 0, out[-4000:] + up.stderr[-3000:]
        lb_row = r"^nginx-metallb +LoadBalancer +10\.\S+ +192\.168\.10\.90 +8090:3\d{4}/TCP "
        assert re.search(lb_row, out, re.M), out
        # The client's curl through the LB IP, answered by the nginx-metallb pod.
        curl = r"^\$ python -m lab exec client -- curl -s -m 3 http://192\.168\.10\.90:8090/\n"
        answers = re.findall(curl + r"(nginx-metallb-\S+) 192\.168\.10\.1[123]:\d+$", out, re.M)
        assert len(answers) == 5, out
        assert "EXTERNAL-IP 192.168.10.90:8090 answered 5 of 5 from the client" in out, out
        assert "NodePort 30001 answered on 3 of 3 nodes" in out, out
        # Every request from a node goes to the one pod its address is pinned to.
        sticky = r"ClientIP affinity \(nginx-sticky, [\d.]+\): node1: 6/6 to nginx-app-\S+, node2: 6/6 to "
        assert re.search(sticky, out), out
        gap = re.search(r"^failover gap: (\d+) ms", out, re.M)
        assert gap, out
        assert "dataplane iptables -> nftables: connection=up" in out, out
        assert "node1 after the switch: iptables KUBE-* rules: 0, nftables table ip ironlb: present" in out, (
            out
        )
    finally:
        down = subprocess.run([*demo, "down"], capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in listing.splitlines() if line.startswith(f"{prefix}-")]
    assert not list((tmp_path / "state").glob("*"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in ps
