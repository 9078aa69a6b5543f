"""Run the embedded API server as a child process (tests, the lab): start, wait for ready, stop or kill."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

READY_PREFIX = "ironlb-apiserver ready "


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ApiServerProcess:
    """`with ApiServerProcess(data_dir) as srv:` -> srv.url, srv.port, srv.kubeconfig, srv.pid.

    The server's log goes to `log_file` (default: DATA_DIR/apiserver.log, or inherited stderr in memory mode).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int = 0,
        extra_args: Sequence[str] = (),
        log_file: Path | None = None,
        start_timeout: float = 60.0,  # a wait, not a bound: a start-up stretches under a loaded machine
    ) -> None:
        # Absolute: the child runs from the repository root.
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self.requested_port = port
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.data_dir is not None:
            self.kubeconfig = self.data_dir / "kubeconfig"
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="ironlb-apiserver-")
            self.kubeconfig = Path(self._tmp.name) / "kubeconfig"
        if log_file is None and self.data_dir is not None:
            log_file = self.data_dir / "apiserver.log"
        self.log_file = Path(log_file).absolute() if log_file is not None else None
        self.url = ""
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.startup_seconds = 0.0  # wall clock from spawn to the ready line
        self.startup_cpu_seconds = 0.0  # CPU the server used until ready (independent of machine load)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def token(self) -> str:
        """The admin bearer token from DATA_DIR/tokens.csv (only with a data dir)."""
        assert self.data_dir is not None, "bearer tokens need a data dir"
        return (self.data_dir / "tokens.csv").read_text().split(",", 1)[0].strip()

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "lab.apiserver",
            "--port",
            str(self.requested_port),
            "--kubeconfig-out",
            str(self.kubeconfig),
        ]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd + self.extra_args

    def start(self) -> ApiServerProcess:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        log: IO[str] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_file.open("a")
        repo_root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH", "")) if p)
        began = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=repo_root
            )
        finally:
            if log is not None:
                log.close()
        assert self.proc.stdout is not None
        deadline = began + self.start_timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(READY_PREFIX):
                break
        if not line.startswith(READY_PREFIX):
            self.kill()
            raise RuntimeError(f"API server did not become ready: {self._log_tail()}")
        self.startup_seconds = time.monotonic() - began
        self.startup_cpu_seconds = _cpu_seconds(self.proc.pid)
        fields = dict(part.split("=", 1) for part in line[len(READY_PREFIX) :].split() if "=" in part)
        self.url = fields["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _log_tail(self) -> str:
        if self.log_file is not None and self.log_file.exists():
            return self.log_file.read_text()[-3000:]
        return "(log on stderr)"

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApiServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.cleanup()
