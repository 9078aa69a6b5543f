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

from lab.logsetup import configure_logging
from lab.uml_job import (
    GUEST_BIN_DIR,
    GUEST_MARKER_ENV,
    PROJECT_ROOT,
    UmlCrash,
    UmlError,
    UmlResult,
    UmlTimeout,
    console_tail,
    guest_environment,
    guest_pytest_argv,
    judge,
    kernel_command_line,
    render_job_script,
)

__all__ = [
    "DEFAULT_MEM",
    "DEFAULT_TIMEOUT",
    "EXIT_GUEST_FAILURE",
    "EXIT_TIMEOUT",
    "GUEST_BIN_DIR",
    "GUEST_MARKER_ENV",
    "PROJECT_ROOT",
    "UmlCrash",
    "UmlError",
    "UmlGuest",
    "UmlResult",
    "UmlTimeout",
    "guest_pytest_argv",
    "main",
    "run_in_uml",
]

log = logging.getLogger("lab.uml")

UML_KERNEL = Path("/usr/bin/linux.uml")
INIT_SCRIPT = Path(__file__).with_name("uml_init.sh")
DEFAULT_TIMEOUT = 120.0
DEFAULT_MEM = "512M"
MEMORY_DIR = Path("/dev/shm")
# CLI exit codes for failures of the guest itself (as coreutils' timeout and env use them).
EXIT_TIMEOUT = 124
EXIT_GUEST_FAILURE = 125


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


def _kernel_environment() -> dict[str, str]:
    """linux.uml's own environment: its guest memory is a file it makes in TMPDIR, and on a disk (a test's
    temp dir) every page the guest touches costs; /dev/shm keeps it in memory (deleted as it is made)."""
    env = dict(os.environ)
    if _is_tmpfs(MEMORY_DIR):
        env["TMPDIR"] = str(MEMORY_DIR)
    return env


def _is_tmpfs(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[1:3] == [str(path), "tmpfs"] for line in mounts if len(line.split()) >= 3)


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
    kernel_args: Sequence[str] = (),
) -> UmlResult:
    """Boot a guest, run argv in it (cwd, caller's env + `env`), power off; return its exit code and output.

    `timeout` covers boot and command. `stream` copies the guest's stdout/stderr to ours as they arrive.
    `tmp_root` is where the job's temp dir is made (default: the system temp dir); it is always removed.
    Raises UmlTimeout or UmlCrash when the guest does not deliver an exit code.
    """
    if timeout <= 0:
        raise ValueError(f"timeout: {timeout} must be positive")
    guest = UmlGuest(
        argv, env, cwd=cwd, mem=mem, stream=stream, inherit_env=inherit_env, tmp_root=tmp_root,
        kernel_args=kernel_args,
    )  # fmt: skip
    guest.start()
    try:
        return guest.wait(timeout)
    finally:
        guest.close()


class UmlGuest:
    """One guest kernel running one command, started and then waited for (or stopped) by the caller: for
    jobs that the host talks to while they run (lab.uml_lab's guest network). Its job dir goes with close().
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        mem: str = DEFAULT_MEM,
        stream: bool = False,
        inherit_env: bool = True,
        tmp_root: str | os.PathLike[str] | None = None,
        kernel_args: Sequence[str] = (),
    ) -> None:
        if not UML_KERNEL.exists():
            raise UmlError(
                f"{UML_KERNEL} not found: install the user-mode-linux package (scripts/install.sh)"
            )
        self.workdir = str(Path(cwd).resolve()) if cwd is not None else str(Path.cwd())
        if not Path(self.workdir).is_dir():
            raise ValueError(f"cwd: {self.workdir} is not a directory")
        self.argv = list(argv)
        self.env = dict(env or {})
        self.mem = mem
        self.stream = stream
        self.inherit_env = inherit_env
        self.tmp_root = tmp_root
        self.kernel_args = list(kernel_args)
        self.job: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.tails: list[_Tail] = []
        self.started = 0.0
        self.status: int | None = None

    def start(self) -> None:
        self.job = Path(tempfile.mkdtemp(prefix="ironlb-uml-", dir=self.tmp_root)).resolve()
        try:
            self._boot(self.job)
        except BaseException:
            self.close()
            raise

    def _boot(self, job: Path) -> None:
        uml_dir = job / "uml"
        guest_tmp = job / "tmp"
        uml_dir.mkdir()
        guest_tmp.mkdir()
        # A private copy with a known mode: the init must be executable whatever the checkout did to modes.
        init = job / "init.sh"
        shutil.copyfile(INIT_SCRIPT, init)
        init.chmod(0o755)
        guest_env = guest_environment(
            os.environ if self.inherit_env else {}, self.env, venv_bins=_venv_bins(), tmpdir=str(guest_tmp)
        )
        (job / "job.sh").write_text(render_job_script(self.argv, guest_env, self.workdir))
        umid = f"ironlb-{secrets.token_hex(4)}"
        cmdline = kernel_command_line(
            mem=self.mem, uml_dir=uml_dir, umid=umid, init=init, job_dir=job, extra=self.kernel_args
        )
        self.tails = [
            _Tail(job / "stdout", sys.stdout.buffer if self.stream else None),
            _Tail(job / "stderr", sys.stderr.buffer if self.stream else None),
        ]
        self.started = time.monotonic()
        with (job / "console.log").open("wb") as console_file:
            self.proc = subprocess.Popen(
                [str(UML_KERNEL), *cmdline],
                env=_kernel_environment(),
                stdin=subprocess.DEVNULL,
                stdout=console_file,
                stderr=subprocess.STDOUT,
                cwd=job,
                start_new_session=True,
                preexec_fn=_no_core_dumps,
            )
        log.info("uml boot pid=%d umid=%s job=%s argv=%s", self.proc.pid, umid, job, shlex.join(self.argv))

    def running(self) -> bool:
        """Pump the output files; whether linux.uml still runs."""
        assert self.proc is not None, "start() first"
        for tail in self.tails:
            tail.pump()
        # WNOWAIT leaves linux.uml a zombie, so its process group id cannot be reused before we kill it.
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait(self, timeout: float) -> UmlResult:
        """Until the guest powers off or `timeout` passes (then it is killed): its exit code and output."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            while self.running():
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                time.sleep(0.05)
        finally:
            self._stop()
        return self._result(timed_out, timeout)

    def stop(self) -> None:
        """Kill the guest now (its processes with it), whatever it is doing."""
        if self.proc is not None and self.status is None:
            self._stop()

    def _stop(self) -> None:
        assert self.proc is not None
        # The guest's processes are host processes in linux.uml's group: kill them all, then reap the leader.
        _kill_group(self.proc.pid)
        self.status = self.proc.wait()
        for tail in self.tails:
            tail.pump()
        log.info(
            "uml exit pid=%d status=%d seconds=%.1f",
            self.proc.pid,
            self.status,
            time.monotonic() - self.started,
        )

    @property
    def output(self) -> tuple[str, str, str]:
        """stdout, stderr and console so far."""
        console = _read_optional(self.job / "console.log") if self.job is not None else None
        return self.tails[0].text(), self.tails[1].text(), console or ""

    def _result(self, timed_out: bool, timeout: float) -> UmlResult:
        assert self.proc is not None and self.job is not None and self.status is not None
        stdout, stderr, console = self.output
        if timed_out:
            raise UmlTimeout(
                f"guest timed out after {timeout:g}s running {shlex.join(self.argv)}; "
                f"linux.uml pid {self.proc.pid} and its processes killed\n"
                f"{console_tail(console)}",
                stdout=stdout,
                stderr=stderr,
                console=console,
            )
        try:
            code = judge(self.status, _read_optional(self.job / "exitcode"), console)
        except UmlCrash as crash:
            crash.stdout, crash.stderr = stdout, stderr
            raise
        return UmlResult(returncode=code, stdout=stdout, stderr=stderr, console=console)

    def close(self) -> None:
        """Kill the guest if it still runs and remove its job dir."""
        try:
            self.stop()
        finally:
            if self.job is not None:
                shutil.rmtree(self.job, ignore_errors=True)

    def __enter__(self) -> UmlGuest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class _Interrupted(BaseException):
    """SIGTERM/SIGHUP as an exception, so run_in_uml's cleanup (kill the guest, remove the job) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    # Ignore repeats: a second signal must not cut the cleanup the first one started.
    signal.signal(signum, signal.SIG_IGN)
    raise _Interrupted(signum)


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
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
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
    except _Interrupted as stop:
        print(f"lab.uml: stopped by {signal.Signals(stop.signum).name}; guest killed", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("lab.uml: interrupted; guest killed", file=sys.stderr)
        return 128 + signal.SIGINT
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
