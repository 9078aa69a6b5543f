"""Run one command inside a user-mode-linux guest kernel, for tests that need IPVS.

This machine's kernel has no IPVS; Debian's user-mode-linux kernel (6.1, ip_vs and friends as modules) runs
as an ordinary process with the host's root as its filesystem (hostfs), so the guest sees the same files, the
same venv and the same checkout. A job is a private temp dir holding the init's input (job.sh) and its output
(stdout, stderr, exitcode) plus the guest's uml_dir; the host streams the output files while the guest runs
and judges the result afterwards. Anything but a written exit code after a clean power-off is a failure:
a kernel panic, a missing exit-code file, a non-zero linux.uml exit or a timeout raise UmlError.

CLI: python -m lab.uml [--mem 512M] [--timeout S] [--cwd DIR] [--env K=V ...] -- CMD [ARGS...]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("lab.uml")

UML_KERNEL = Path("/usr/bin/linux.uml")
INIT_SCRIPT = Path(__file__).with_name("uml_init.sh")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Set to "1" in every guest command's environment; tests/guest/conftest.py collects nothing without it.
GUEST_MARKER_ENV = "IRONLB_IN_UML"
# The init's modprobe wrapper lives here inside the guest; it goes first in the command's PATH.
GUEST_BIN_DIR = "/run/ironlb-uml/bin"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MEM = "512M"
# CLI exit codes for failures of the guest itself (as coreutils' timeout and env use them).
EXIT_TIMEOUT = 124
EXIT_GUEST_FAILURE = 125
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


# ------------------------------------------------------------------------------------------------------------
# Pure parts: what to boot, what the guest runs, and how to judge what came back.


def kernel_command_line(*, mem: str, uml_dir: Path, umid: str, init: Path, job_dir: Path) -> list[str]:
    """linux.uml arguments. Unknown KEY=VAL words reach the init as environment (its job dir)."""
    if not _MEM_RE.match(mem):
        raise ValueError(f"mem: {mem!r} is not a size like 512M")
    for name, path in (("uml_dir", uml_dir), ("init", init), ("job dir", job_dir)):
        text = str(path)
        if not path.is_absolute() or any(ch.isspace() for ch in text):
            raise ValueError(f"{name}: {text!r} must be an absolute path without whitespace (kernel cmdline)")
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


# ------------------------------------------------------------------------------------------------------------
# The shell: boot, stream, supervise, clean up.


@dataclass
class _Tail:
    """Follows one output file the guest writes through hostfs, optionally copying new bytes to a sink."""

    path: Path
    sink: BinaryIO | None
    offset: int = 0
    chunks: list[bytes] = field(default_factory=list)

    def pump(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self.offset += len(data)
        self.chunks.append(data)
        if self.sink is not None:
            self.sink.write(data)
            self.sink.flush()

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def _venv_bins() -> list[str]:
    bins = []
    if sys.prefix != sys.base_prefix:
        bins.append(str(Path(sys.prefix) / "bin"))
    project_venv = PROJECT_ROOT / ".venv" / "bin"
    if project_venv.is_dir() and str(project_venv) not in bins:
        bins.append(str(project_venv))
    return bins


def _no_core_dumps() -> None:
    # A guest panic aborts linux.uml; its core would be as big as the guest's memory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def run_in_uml(
    argv: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    mem: str = DEFAULT_MEM,
    stream: bool = False,
    inherit_env: bool = True,
    tmp_root: str | os.PathLike[str] | None = None,
) -> UmlResult:
    """Boot a guest, run argv in it (cwd, caller's env + `env`), power off; return its exit code and output.

    `timeout` covers boot and command. `stream` copies the guest's stdout/stderr to ours as they arrive.
    `tmp_root` is where the job's temp dir is made (default: the system temp dir); it is always removed.
    Raises UmlTimeout or UmlCrash when the guest does not deliver an exit code.
    """
    if not UML_KERNEL.exists():
        raise UmlError(f"{UML_KERNEL} not found: install the user-mode-linux package (scripts/install.sh)")
    if timeout <= 0:
        raise ValueError(f"timeout: {timeout} must be positive")
    workdir = str(Path(cwd).resolve()) if cwd is not None else str(Path.cwd())
    if not Path(workdir).is_dir():
        raise ValueError(f"cwd: {workdir} is not a directory")

    job = Path(tempfile.mkdtemp(prefix="ironlb-uml-", dir=tmp_root)).resolve()
    try:
        return _run_job(job, list(argv), timeout, env or {}, workdir, mem, stream, inherit_env)
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _run_job(
    job: Path,
    argv: list[str],
    timeout: float,
    env: Mapping[str, str],
    workdir: str,
    mem: str,
    stream: bool,
    inherit_env: bool,
) -> UmlResult:
    uml_dir = job / "uml"
    guest_tmp = job / "tmp"
    uml_dir.mkdir()
    guest_tmp.mkdir()
    # A private copy with a known mode: the init must be executable whatever the checkout did to file modes.
    init = job / "init.sh"
    shutil.copyfile(INIT_SCRIPT, init)
    init.chmod(0o755)
    guest_env = guest_environment(
        os.environ if inherit_env else {}, env, venv_bins=_venv_bins(), tmpdir=str(guest_tmp)
    )
    (job / "job.sh").write_text(render_job_script(argv, guest_env, workdir))
    umid = f"ironlb-{secrets.token_hex(4)}"
    cmdline = kernel_command_line(mem=mem, uml_dir=uml_dir, umid=umid, init=init, job_dir=job)

    console_path = job / "console.log"
    tails = [
        _Tail(job / "stdout", sys.stdout.buffer if stream else None),
        _Tail(job / "stderr", sys.stderr.buffer if stream else None),
    ]
    started = time.monotonic()
    deadline = started + timeout
    with console_path.open("wb") as console_file:
        proc = subprocess.Popen(
            [str(UML_KERNEL), *cmdline],
            stdin=subprocess.DEVNULL,
            stdout=console_file,
            stderr=subprocess.STDOUT,
            cwd=job,
            start_new_session=True,
            preexec_fn=_no_core_dumps,
        )
    log.info("uml boot pid=%d umid=%s job=%s argv=%s", proc.pid, umid, job, shlex.join(argv))
    timed_out = False
    try:
        while True:
            for tail in tails:
                tail.pump()
            # WNOWAIT leaves linux.uml a zombie, so its process group id cannot be reused before we kill it.
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        # The guest's processes are host processes in linux.uml's group: kill them all, then reap the leader.
        _kill_group(proc.pid)
        status = proc.wait()
    for tail in tails:
        tail.pump()
    stdout, stderr = tails[0].text(), tails[1].text()
    console = console_path.read_text(errors="replace")
    elapsed = time.monotonic() - started
    log.info("uml exit pid=%d status=%d seconds=%.1f timed_out=%s", proc.pid, status, elapsed, timed_out)
    if timed_out:
        raise UmlTimeout(
            f"guest timed out after {timeout:g}s running {shlex.join(argv)}; "
            f"linux.uml pid {proc.pid} and its processes killed\n"
            f"{console_tail(console)}",
            stdout=stdout,
            stderr=stderr,
            console=console,
        )
    try:
        code = judge(status, _read_optional(job / "exitcode"), console)
    except UmlCrash as crash:
        crash.stdout, crash.stderr = stdout, stderr
        raise
    return UmlResult(returncode=code, stdout=stdout, stderr=stderr, console=console)


# ------------------------------------------------------------------------------------------------------------
# CLI


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env: {item!r} is not K=V")
        env[name] = value
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--" in args_in:
        split = args_in.index("--")
        options, command = args_in[:split], args_in[split + 1 :]
    else:
        options, command = args_in, []
    parser = argparse.ArgumentParser(
        prog="python -m lab.uml",
        description="Run a command inside a user-mode-linux guest (IPVS-capable kernel); exit with its code.",
        usage="%(prog)s [--mem 512M] [--timeout SECONDS] [--cwd DIR] [--env K=V ...] [-v] -- CMD [ARGS...]",
    )
    parser.add_argument("--mem", default=DEFAULT_MEM, help="guest memory (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for boot and command")
    parser.add_argument("--cwd", default=None, help="working directory in the guest (default: current)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra guest env variable")
    parser.add_argument("-v", "--verbose", action="store_true", help="log boot and exit events to stderr")
    args = parser.parse_args(options)
    if not command:
        parser.error("missing command after --")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        result = run_in_uml(
            command, timeout=args.timeout, env=_parse_env(args.env), cwd=args.cwd, mem=args.mem, stream=True
        )
    except ValueError as err:
        parser.error(str(err))
    except UmlTimeout as err:
        print(f"lab.uml: error: {err}", file=sys.stderr)
        return EXIT_TIMEOUT
    except UmlError as err:
        print(f"lab.uml: error: {err}", file=sys.stderr)
        return EXIT_GUEST_FAILURE
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
