"""lab.uml's pure parts, without a guest: kernel command line, guest environment, job script, verdict."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.uml_job import (
    GUEST_BIN_DIR,
    GUEST_MARKER_ENV,
    UmlCrash,
    describe_status,
    guest_environment,
    judge,
    kernel_command_line,
    render_job_script,
)

PANIC_LINE = "Kernel panic - not syncing: sysrq triggered crash"
PANIC_CONSOLE = "booting\nKernel panic - not syncing: sysrq triggered crash\nstack line 1\nstack line 2\n"


def test_kernel_command_line_uses_hostfs_private_uml_dir_and_passes_the_job() -> None:
    words = kernel_command_line(
        mem="256M",
        uml_dir=Path("/tmp/j/uml"),
        umid="ironlb-1",
        init=Path("/tmp/j/init.sh"),
        job_dir=Path("/tmp/j"),
    )
    assert "mem=256M" in words
    assert "uml_dir=/tmp/j/uml" in words
    assert "rootfstype=hostfs" in words and "rootflags=/" in words
    assert "init=/tmp/j/init.sh" in words
    assert "oops=panic" in words
    assert words[-1] == "IRONLB_UML_JOB=/tmp/j"


@pytest.mark.parametrize(
    ("mem", "job_dir", "problem"),
    [
        ("lots", Path("/tmp/j"), "mem"),
        ("512M", Path("/tmp/a b"), "job dir"),
        ("512M", Path("relative"), "job dir"),
    ],
)
def test_kernel_command_line_rejects_what_the_kernel_would_split_or_misread(
    mem: str, job_dir: Path, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        kernel_command_line(mem=mem, uml_dir=Path("/tmp/u"), umid="x", init=Path("/tmp/i"), job_dir=job_dir)


def test_guest_environment_puts_wrapper_and_venv_first_and_marks_the_guest() -> None:
    base = {"PATH": "/usr/bin:/venv/bin:/bin", "HOME": "/root", "PYTEST_CURRENT_TEST": "x", "TMPDIR": "/host"}
    env = guest_environment(base, {"EXTRA": "1"}, venv_bins=["/venv/bin"], tmpdir="/tmp/job/tmp")
    assert env["PATH"] == f"{GUEST_BIN_DIR}:/venv/bin:/usr/bin:/bin"
    assert env[GUEST_MARKER_ENV] == "1"
    assert env["TMPDIR"] == "/tmp/job/tmp"
    assert env["EXTRA"] == "1" and env["HOME"] == "/root"
    assert "PYTEST_CURRENT_TEST" not in env
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_guest_environment_keeps_an_explicit_tmpdir_and_rejects_bad_names() -> None:
    env = guest_environment({}, {"TMPDIR": "/mine"}, venv_bins=[], tmpdir="/tmp/job/tmp")
    assert env["TMPDIR"] == "/mine"
    with pytest.raises(ValueError, match="not a valid variable name"):
        guest_environment({}, {"A-B": "1"}, venv_bins=[], tmpdir="/t")


def test_job_script_enters_cwd_replaces_env_and_keeps_argv_intact(tmp_path: Path) -> None:
    # The script is plain sh: run it on the host to check quoting and the environment swap for real.
    argv = ["printf", "%s|", "A=B", "it's $HOME", "two  spaces", "", "\\n"]
    script = render_job_script(argv, {"PATH": "/usr/bin:/bin", "ONLY": "yes"}, str(tmp_path))
    job = tmp_path / "job.sh"
    job.write_text(script)
    out = subprocess.run(["sh", str(job)], capture_output=True, text=True, check=True).stdout
    assert out == "A=B|it's $HOME|two  spaces||\\n|"

    show = ["sh", "-c", 'echo "$(pwd) $ONLY ${HOME:-unset}"']
    job.write_text(render_job_script(show, {"ONLY": "yes"}, "/"))
    out = subprocess.run(["sh", str(job)], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out == "/ yes unset\n"


def test_job_script_fails_when_cwd_is_missing(tmp_path: Path) -> None:
    job = tmp_path / "job.sh"
    job.write_text(render_job_script(["true"], {}, str(tmp_path / "missing")))
    assert subprocess.run(["sh", str(job)], capture_output=True).returncode != 0


def test_judge_returns_the_written_exit_code_after_a_clean_power_off() -> None:
    assert judge(0, "0\n", "boot log") == 0
    assert judge(0, "3\n", "boot log") == 3


@pytest.mark.parametrize(
    ("status", "exitcode", "console", "expected"),
    [
        (-6, None, PANIC_CONSOLE, f"guest kernel panicked ({PANIC_LINE})"),
        (134, "0\n", "", "linux.uml exited with status 134 (an exit code file was written)"),
        (0, "0\n", PANIC_CONSOLE, "guest kernel panicked"),
        (0, None, "", "without writing an exit code file"),
        (0, "garbage", "", "unreadable exit code"),
        (0, "300", "", "impossible exit code 300"),
    ],
)
def test_judge_turns_every_unclean_end_into_a_crash(
    status: int, exitcode: str | None, console: str, expected: str
) -> None:
    with pytest.raises(UmlCrash) as crash:
        judge(status, exitcode, console)
    assert expected in str(crash.value)
    assert "--- guest console" in str(crash.value)


def test_describe_status_names_signals() -> None:
    assert describe_status(-6) == "killed by SIGABRT"
    assert describe_status(1) == "exited with status 1"
