"""`--mode ipvs` on a kernel without IPVS (this machine's): one clear line naming the missing module, an exit
before any API traffic, and nothing touched (issue 14).

It runs in a scratch netns, so that even a wrong probe could only touch the test's own namespace. Where the
host kernel has IPVS, the same command runs in a user-mode-linux guest whose module loading is switched off.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.uml import run_in_uml
from tests.dataplane.netns import run_in, scratch_netns

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
# A kubeconfig that cannot be read: reaching for the API would be a second, different error.
COMMAND = ["-m", "dataplane", "--node", "node1", "--mode", "ipvs", "--kubeconfig", "/nonexistent/kubeconfig"]


def kernel_state(netns: str) -> str:
    links = run_in(netns, "ip", "-o", "link").stdout
    rules = run_in(netns, "iptables-legacy-save").stdout + run_in(netns, "iptables-nft-save").stdout
    sets = run_in(netns, "ipset", "list", "-n").stdout
    return "\n".join(line for line in (links + rules + sets).splitlines() if not line.startswith("#"))


def test_mode_ipvs_without_ipvs_fails_with_one_line_naming_the_module() -> None:
    if (
        Path("/proc/net/ip_vs").exists()
        or subprocess.run(["modinfo", "ip_vs"], capture_output=True).returncode == 0
    ):
        # This kernel has IPVS: ask a guest kernel without module loading instead.
        script = f"echo /bin/false > /proc/sys/kernel/modprobe; exec {sys.executable} {' '.join(COMMAND)}"
        result = run_in_uml(["sh", "-c", script], cwd=REPO, timeout=120)
        code, output, state = result.returncode, result.output, ""
    else:
        with scratch_netns() as netns:
            before = kernel_state(netns)
            done = run_in(netns, sys.executable, *COMMAND)
            code, output, state = done.returncode, done.stdout + done.stderr, kernel_state(netns)
            assert state == before, "the failed start touched the namespace"
    lines = output.strip().splitlines()
    assert code == 2, output
    assert len(lines) == 1, output
    assert "event=mode_unavailable mode=ipvs" in lines[0] and "kernel module ip_vs" in lines[0], lines[0]
