"""Starting and stopping the lab's processes, with pid files in the lab state dir.

Each process runs detached (own session, stdout+stderr to `<state>/logs/<name>.log`) so it outlives
`python -m lab up`. Its pid file holds the pid and the kernel's start time of that pid, so a later `down`
never signals an unrelated process that reused the number. `find_marked_processes` finds whatever escaped the
pid files: processes whose command line carries a lab marker (the lab's state dir path).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("lab.supervisor")

PROC = Path("/proc")


class SupervisorError(RuntimeError):
    """A lab process did not start or did not become ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    start_time: str


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and ')', so split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def is_running(pid: int, expected_start: str | None = None) -> bool:
    """Alive and not a zombie (and, if given, still the same process as when recorded)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return expected_start is None or fields[19] == expected_start


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _protected_pids() -> set[int]:
    """This process and its ancestors: a sweep must never take down the caller."""
    pids: set[int] = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        fields = _stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
    return pids


def signal_and_wait(pids: Iterable[int], grace: float) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL the rest; returns the pids that were signalled."""
    targets = {pid: start_time(pid) for pid in pids}
    targets = {pid: st for pid, st in targets.items() if st is not None and is_running(pid, st)}
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_running(pid, st) for pid, st in targets.items()):
        time.sleep(0.05)
    for pid, st in targets.items():
        if is_running(pid, st):
            log.warning(
                "event=process-kill pid=%d reason=no-exit-after-sigterm cmd=%r", pid, cmdline(pid)[:120]
            )
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(is_running(pid, st) for pid, st in targets.items()):
        time.sleep(0.02)
    return sorted(targets)


def find_marked_processes(markers: Sequence[str], exact_args: Iterable[str] = ()) -> list[int]:
    """Running processes whose command line contains one of the markers, or has an argument exactly equal to
    one of `exact_args` (e.g. a lab netns name); never this process or its ancestors."""
    protected = _protected_pids()
    exact = set(exact_args)
    found: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in protected:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(argv)
        hit = any(marker in line for marker in markers) or bool(exact.intersection(argv))
        if hit and is_running(pid):
            found.append(pid)
    return sorted(found)


class Supervisor:
    """The processes of one lab, recorded under `<state_dir>/pids`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"
        # Popen objects of children started here, so they are reaped (no zombies) when stopped here.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        st = start_time(proc.pid) or ""
        (self.pid_dir / f"{name}.pid").write_text(f"{proc.pid} {st}\n")
        log.info("event=process-start name=%s pid=%d log=%s", name, proc.pid, self.log_path(name))
        return proc.pid

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_line(
        self, name: str, pid: int, pattern: re.Pattern[str], timeout: float, since: int = 0
    ) -> re.Match[str]:
        """Wait until the process's log (after byte `since`: a restart appends) has a line matching `pattern`;
        fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.log_path(name).read_bytes()[since:].decode(errors="replace")
            except OSError:
                text = ""
            for line in text.splitlines():
                match = pattern.search(line)
                if match:
                    return match
            if not is_running(pid):
                raise SupervisorError(
                    f"{name} (pid {pid}) exited before it was ready:\n{self.log_tail(name)}"
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"{name} (pid {pid}) not ready after {timeout:.0f}s:\n{self.log_tail(name)}"
                )
            time.sleep(0.05)

    def recorded(self) -> list[Recorded]:
        result: list[Recorded] = []
        if not self.pid_dir.is_dir():
            return result
        for path in sorted(self.pid_dir.glob("*.pid")):
            parts = path.read_text().split()
            if parts and parts[0].isdigit():
                result.append(Recorded(path.stem, int(parts[0]), parts[1] if len(parts) > 1 else ""))
        return result

    def running(self) -> dict[str, bool]:
        return {rec.name: is_running(rec.pid, rec.start_time or None) for rec in self.recorded()}

    def stop(self, names_in_order: Sequence[Sequence[str]], grace: float = 8.0) -> list[int]:
        """Stop recorded processes group by group (e.g. kubelets before the API server they talk to)."""
        by_name = {rec.name: rec for rec in self.recorded()}
        stopped: list[int] = []
        remaining = set(by_name)
        named = {n for group in names_in_order for n in group}
        groups = [list(group) for group in names_in_order] + [sorted(remaining - named)]
        for group in groups:
            pids = [
                by_name[n].pid
                for n in group
                if n in by_name and is_running(by_name[n].pid, by_name[n].start_time or None)
            ]
            stopped.extend(signal_and_wait(pids, grace))
            for n in group:
                remaining.discard(n)
                (self.pid_dir / f"{n}.pid").unlink(missing_ok=True)
        self.reap()
        return stopped

    def reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]
