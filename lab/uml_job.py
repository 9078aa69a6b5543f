"""The pure half of lab.uml: what a user-mode-linux job boots, what the guest runs, how its end is judged.

No processes here: lab/uml.py is the shell that boots linux.uml, streams the output files and calls judge().
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Set to "1" in every guest command's environment; tests/guest/conftest.py collects nothing without it.
GUEST_MARKER_ENV = "IRONLB_IN_UML"
# The init's modprobe wrapper lives here inside the guest; it goes first in the command's PATH.
GUEST_BIN_DIR = "/run/ironlb-uml/bin"
CONSOLE_TAIL_LINES = 25
# Host variables that describe the caller's own run and would mislead a process inside the guest.
_HOST_ONLY_ENV = frozenset({"PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"})
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MEM_RE = re.compile(r"^[1-9][0-9]*[KMG]?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class UmlResult:
    """The guest command's exit code and output; `console` is the guest kernel's console (boot messages)."""

    returncode: int
    stdout: str
    stderr: str
    console: str = ""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class UmlError(RuntimeError):
    """The guest did not deliver an exit code: it crashed, hung or could not start."""

    def __init__(self, message: str, *, stdout: str = "", stderr: str = "", console: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.console = console


class UmlCrash(UmlError):
    """Kernel panic, linux.uml exiting non-zero, or a power-off without an exit code."""


class UmlTimeout(UmlError):
    """The guest ran past its deadline and was killed."""


def kernel_command_line(
    *, mem: str, uml_dir: Path, umid: str, init: Path, job_dir: Path, extra: Sequence[str] = ()
) -> list[str]:
    """linux.uml arguments. Unknown KEY=VAL words reach the init as environment (its job dir). `extra`:
    more kernel arguments, such as a network device (`eth0=tuntap,<host tap>`)."""
    if not _MEM_RE.match(mem):
        raise ValueError(f"mem: {mem!r} is not a size like 512M")
    for name, path in (("uml_dir", uml_dir), ("init", init), ("job dir", job_dir)):
        text = str(path)
        if not path.is_absolute() or any(ch.isspace() for ch in text):
            raise ValueError(f"{name}: {text!r} must be an absolute path without whitespace (kernel cmdline)")
    for word in extra:
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"kernel argument {word!r} must be one word")
    return [
        f"mem={mem}",
        f"uml_dir={uml_dir}",
        f"umid={umid}",
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "rw",
        f"init={init}",
        "con0=null,fd:1",
        "con=null",
        "ssl=null",
        "quiet",
        # An oops anywhere (not only in PID 1) must end the run as a crash, never leave a half-dead guest.
        "oops=panic",
        *extra,
        f"IRONLB_UML_JOB={job_dir}",
    ]


def guest_environment(
    base: Mapping[str, str],
    overrides: Mapping[str, str],
    *,
    venv_bins: Sequence[str],
    tmpdir: str,
) -> dict[str, str]:
    """The command's environment: the caller's, plus overrides, with the venv and modprobe wrapper on PATH.

    TMPDIR points into the job dir (unless overridden) so temp files made inside the guest, which would
    otherwise land in the host's /tmp through hostfs, are removed with the job.
    """
    env = {k: v for k, v in base.items() if k not in _HOST_ONLY_ENV}
    env.update(overrides)
    if "TMPDIR" not in overrides:
        env["TMPDIR"] = tmpdir
    path = [p for p in env.get("PATH", _DEFAULT_PATH).split(":") if p]
    for extra in reversed([GUEST_BIN_DIR, *venv_bins]):
        if extra in path:
            path.remove(extra)
        path.insert(0, extra)
    env["PATH"] = ":".join(path)
    # Don't write __pycache__ into the host checkout from the guest; existing .pyc files are still used.
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    env[GUEST_MARKER_ENV] = "1"
    for name, value in env.items():
        if not _ENV_NAME_RE.match(name):
            raise ValueError(f"env: {name!r} is not a valid variable name")
        if "\0" in value:
            raise ValueError(f"env: value of {name} contains a NUL byte")
    return env


def render_job_script(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str:
    """The shell script the guest init runs: enter cwd, replace the environment, exec the command."""
    if not argv:
        raise ValueError("argv: empty command")
    if any("\0" in a for a in argv):
        raise ValueError("argv: contains a NUL byte")
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    command = " ".join(shlex.quote(a) for a in argv)
    # `env -i` would take a command word containing "=" for an assignment, so it always runs sh, which
    # then execs the real argv unchanged.
    return (
        "# Written by lab/uml.py for one guest run.\n"
        f"cd {shlex.quote(cwd)} || exit 1\n"
        f"exec /usr/bin/env -i {assignments} /bin/sh -c 'exec \"$@\"' sh {command}\n"
    )


def describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exited with status {status}"


def judge(uml_status: int, exitcode_text: str | None, console: str) -> int:
    """The guest command's exit code, or UmlCrash when the guest itself did not finish cleanly."""
    tail = console_tail(console)
    panic_line = next((line.strip() for line in console.splitlines() if "Kernel panic" in line), None)
    if uml_status != 0 or panic_line is not None:
        what = f"guest kernel panicked ({panic_line})" if panic_line else "guest kernel failed"
        written = "an exit code file was written" if exitcode_text is not None else "no exit code file"
        message = f"{what}: linux.uml {describe_status(uml_status)} ({written})"
        raise UmlCrash(f"{message}\n{tail}", console=console)
    if exitcode_text is None:
        raise UmlCrash(f"guest powered off without writing an exit code file\n{tail}", console=console)
    try:
        code = int(exitcode_text.strip())
    except ValueError:
        message = f"guest wrote an unreadable exit code {exitcode_text!r}"
        raise UmlCrash(f"{message}\n{tail}", console=console) from None
    if not 0 <= code <= 255:
        raise UmlCrash(f"guest wrote an impossible exit code {code}\n{tail}", console=console)
    return code


def console_tail(console: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    kept = console.rstrip("\n").splitlines()[-lines:]
    body = "\n".join(kept) if kept else "(empty)"
    return f"--- guest console, last {len(kept)} lines ---\n{body}"


def guest_pytest_argv(*selection: str) -> list[str]:
    """argv running a pytest selection of tests/guest inside the guest.

    Only tests/guest's conftest is loaded (the host-side ones start API servers), the cache plugin is off
    (no writes into the checkout) and so is hypothesis' plugin (2 s of imports on the guest's one CPU).
    """
    return [
        sys.executable,
        "-m",
        "pytest",
        f"--confcutdir={PROJECT_ROOT / 'tests' / 'guest'}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        *selection,
    ]
