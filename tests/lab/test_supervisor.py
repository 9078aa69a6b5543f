"""The lab's process supervisor with real processes: pid files, readiness, ordered stop, pid-reuse guard."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.supervisor import (
    Supervisor,
    SupervisorError,
    find_marked_processes,
    is_running,
    signal_and_wait,
    start_time,
)

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"
# Ignores SIGTERM: the supervisor must fall back to SIGKILL.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(60)"
)


def test_start_wait_stop_in_order(tmp_path: Path):
    sup = Supervisor(tmp_path / "state")
    a = sup.start("a", [sys.executable, "-c", SLEEPER, "marker-a"])
    b = sup.start("b", [sys.executable, "-c", STUBBORN])
    sup.wait_for_line("a", a, re.compile(r"^ready$"), timeout=10)
    sup.wait_for_line("b", b, re.compile(r"^ready$"), timeout=10)
    assert {r.name: r.pid for r in sup.recorded()} == {"a": a, "b": b}
    assert sup.running() == {"a": True, "b": True}
    assert find_marked_processes(["marker-a"]) == [a]
    stopped = sup.stop([["b"], ["a"]], grace=0.5)
    assert sorted(stopped) == sorted([a, b])
    assert not is_running(a) and not is_running(b)
    assert sup.recorded() == []
    assert (tmp_path / "state" / "logs" / "a.log").read_text().strip() == "ready"


def test_a_process_that_dies_early_is_reported_with_its_log(tmp_path: Path):
    sup = Supervisor(tmp_path / "state")
    pid = sup.start("bad", [sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"])
    expected = r"(?s)bad \(pid \d+\) exited before it was ready.*boom: no config"
    with pytest.raises(SupervisorError, match=expected):
        sup.wait_for_line("bad", pid, re.compile("ready"), timeout=10)


def test_a_recycled_pid_is_never_signalled(tmp_path: Path):
    """A pid file whose start time no longer matches belongs to another process now: leave it alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sup = Supervisor(tmp_path / "state")
        sup.pid_dir.mkdir(parents=True)
        (sup.pid_dir / "old.pid").write_text(f"{other.pid} 1\n")  # start time 1: not this process
        assert sup.running() == {"old": False}
        sup.stop([["old"]], grace=0.2)
        assert other.poll() is None and is_running(other.pid, start_time(other.pid))
    finally:
        other.kill()
        other.wait()


def test_signal_and_wait_ignores_gone_pids():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert signal_and_wait([proc.pid], grace=0.1) == []
