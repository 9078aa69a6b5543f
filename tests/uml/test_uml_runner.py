"""The user-mode-linux runner, for real: each test boots a guest kernel (about 2 s) and checks the outcome.

The guest's exit code is the test's result: a passing guest pytest, a failing command, a kernel panic and a
hang each map to what the caller sees, and the guest leaves no process or temp file behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.uml import (
    EXIT_TIMEOUT,
    PROJECT_ROOT,
    UmlCrash,
    guest_pytest_argv,
    run_in_uml,
)

pytestmark = pytest.mark.uml

# The version directory Debian's user-mode-linux package ships its modules in is the guest's `uname -r`.
UML_RELEASES = sorted(p.name for p in Path("/usr/lib/uml/modules").iterdir())


def live_processes_mentioning(text: str) -> list[str]:
    """Non-zombie processes whose command line contains `text` (every guest process carries its uml_dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name} {cmdline}")
    return found


def assert_guest_gone(tmp_root: Path) -> None:
    deadline = time.monotonic() + 3
    while leftovers := live_processes_mentioning(str(tmp_root)):
        assert time.monotonic() < deadline, f"guest processes left behind: {leftovers}"
        time.sleep(0.1)
    assert list(tmp_root.iterdir()) == [], "job temp dir left behind"


def test_guest_pytest_creates_ipvs_nat_service_and_both_real_servers_answer(tmp_path: Path) -> None:
    result = run_in_uml(
        guest_pytest_argv("-q", "tests/guest/test_ipvs_nat.py"),
        timeout=120,
        cwd=PROJECT_ROOT,
        tmp_root=tmp_path,
    )
    assert result.returncode == 0, result.output
    # Exit code 0 with nothing collected would be a hollow pass; the guest must have run the test.
    assert "1 passed" in result.stdout, result.output
    assert_guest_gone(tmp_path)


def test_cli_runs_in_guest_with_cwd_and_env_and_propagates_a_failing_exit_code(tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    script = 'echo "$ILBT_GREETING|$(pwd)|$(uname -r)|$IRONLB_IN_UML"; echo to-stderr >&2; exit 7'
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.uml",
            "--timeout",
            "60",
            "--cwd",
            str(workdir),
            "--env",
            "ILBT_GREETING=hello world",
            "--",
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(jobs)},
        timeout=90,
    )
    assert proc.returncode == 7, proc.stderr
    greeting, cwd, release, marker = proc.stdout.strip().split("|")
    assert (greeting, cwd, marker) == ("hello world", str(workdir), "1")
    # It really ran on the user-mode-linux kernel, not on the host's.
    assert release in UML_RELEASES and release != os.uname().release
    assert "to-stderr" in proc.stderr
    assert_guest_gone(jobs)


def test_guest_kernel_panic_is_a_failure_with_a_clear_message(tmp_path: Path) -> None:
    started = time.monotonic()
    # The command would exit 0 if the crash did not stop it: only the runner's judgement makes this fail.
    with pytest.raises(UmlCrash) as crash:
        run_in_uml(["sh", "-c", "echo c > /proc/sysrq-trigger; exit 0"], timeout=60, tmp_root=tmp_path)
    message = str(crash.value)
    assert "guest kernel panicked" in message
    assert "sysrq triggered crash" in message
    assert "no exit code file" in message
    assert time.monotonic() - started < 30
    assert_guest_gone(tmp_path)


def test_timeout_kills_the_guest_and_fails(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lab.uml", "--timeout", "4", "--", "sleep", "60"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr
    assert "guest timed out after 4s running sleep 60" in proc.stderr
    assert elapsed < 15
    assert_guest_gone(tmp_path)


def test_sigterm_to_the_cli_kills_the_guest_and_removes_its_job(tmp_path: Path) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "lab.uml", "--timeout", "60", "--", "sleep", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        # The guest's init creates <job>/stdout when it starts the command: the guest is up and busy.
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("ironlb-uml-*/stdout")):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "guest never started the command"
            time.sleep(0.05)
        runner.terminate()
        _, stderr = runner.communicate(timeout=15)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 128 + 15, stderr
    assert "stopped by SIGTERM; guest killed" in stderr
    assert_guest_gone(tmp_path)
