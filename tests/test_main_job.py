"""The README's main job, run as a user runs it (root).

`scripts/demo.sh` builds the lab, runs the controller and the speakers, and shows the tutorial's LoadBalancer
Service with its EXTERNAL-IP and the node answering ARP for it; `scripts/demo.sh down` leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def lab_netns() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith("ilb-")]


def test_demo_shows_the_external_ip_and_down_removes_everything(tmp_path: Path) -> None:
    assert lab_netns() == [], "the default lab is already up; `scripts/demo.sh down` first"
    env = dict(os.environ, IRONLB_LAB_STATE_ROOT=str(tmp_path / "state"))
    demo = [str(REPO / "scripts" / "demo.sh")]
    try:
        up = subprocess.run(demo, capture_output=True, text=True, env=env, timeout=240)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        out = up.stdout
        lb_row = r"^nginx-metallb +LoadBalancer +10\.\S+ +192\.168\.10\.90 +8090:3\d{4}/TCP "
        assert re.search(lb_row, out, re.M), out
        assert re.search(r"^nginx-app +NodePort +10\.\S+ +<none> +8060:30001/TCP ", out, re.M), out
        assert "IPAllocated" in out and 'Assigned IP ["192.168.10.90"]' in out
        # node1's curl is answered by an nginx-metallb pod, naming node1's segment address as the client.
        assert re.search(r"^nginx-metallb-\S+ 192\.168\.10\.11:\d+$", out, re.M), out
        # The client's arping is answered by exactly one MAC: the eth1 of the node kubectl names (issue 11).
        owner = re.search(r"^metallb-system +l2-\S+ +(node\d) +nginx-metallb +default", out, re.M)
        assert owner, out
        mac = Path(f"/run/netns/ilb-{owner[1]}").exists() and subprocess.run(
            ["ip", "netns", "exec", f"ilb-{owner[1]}", "cat", "/sys/class/net/eth1/address"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        replies = re.findall(r"reply from 192\.168\.10\.90 \[([0-9A-F:]{17})\]", out)
        assert replies and {r.lower() for r in replies} == {mac}, out
    finally:
        down = subprocess.run([*demo, "down"], capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab_netns() == []
    assert not (tmp_path / "state" / "ironlb").exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in ps
