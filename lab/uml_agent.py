"""A command agent inside a user-mode-linux guest, and its host-side client: the host runs commands, Python
modules and long-lived processes in the guest's network namespaces over one TCP connection per request.

Starting a process costs the guest far more than the host (every page fault and system call goes through the
host kernel; Python with the kubernetes client takes ~5 s to import there, against 0.3 s here). So the agent
imports the modules its callers name once (`--preload`) and runs each Python request in a fork of itself
(~0.2 s): probes, the dataplane, kubelets, speakers. Commands (`ip`, `ipvsadm`) are ordinary execs.

    python -m lab.uml_agent --listen 172.20.30.254:7070 --preload dataplane.daemon,tests.dataplane.probe

Requests are one JSON object after a 4-byte length; replies likewise, except for a stream, where the
connection becomes the module's stdin and stdout once its request is read. Inside the guest the agent is
single-threaded (forks are safe) and reaps its children; the host keeps their pids.

Trust: the agent runs anything it is asked, as root, inside the guest. It listens only on the guest's side of
the lab's management bridge, which the host's lab owns; the guest is powered off with the lab.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import io
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HEADER = struct.Struct("!I")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


# ---- framing (both sides) ---------------------------------------------------------------------------------


def send_message(sock: socket.socket, message: Mapping[str, Any]) -> None:
    data = json.dumps(message).encode()
    sock.sendall(HEADER.pack(len(data)) + data)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive_message(sock: socket.socket) -> dict[str, Any]:
    (size,) = HEADER.unpack(_read_exact(sock, HEADER.size))
    message: dict[str, Any] = json.loads(_read_exact(sock, size))
    return message


# ---- the guest side ----------------------------------------------------------------------------------------


def enter_netns(name: str | None) -> None:
    """Move this (single-threaded) process into a named network namespace."""
    if not name:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {name}: {os.strerror(error)}")
    finally:
        os.close(fd)


def _run_module(module: str, args: Sequence[str]) -> int:
    """Run `python -m module args` in this process; its exit code."""
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _prepare_child(request: Mapping[str, Any]) -> None:
    enter_netns(request.get("netns"))
    os.environ.update(request.get("env") or {})
    if request.get("cwd"):
        os.chdir(request["cwd"])


def _capture(request: Mapping[str, Any]) -> dict[str, Any]:
    """Run a command or module to completion; its exit code and output."""
    if request.get("argv"):
        try:
            done = subprocess.run(
                request["argv"],
                input=request.get("input"),
                capture_output=True,
                text=True,
                timeout=request.get("timeout", 120),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return {"rc": 124, "stdout": "", "stderr": f"timed out: {exc}"}
        except OSError as exc:
            return {"rc": 127, "stdout": "", "stderr": str(exc)}
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _run_module(request["module"], request.get("args") or [])
        except Exception as exc:  # the module's own crash: reported, as a process's would be
            print(f"{type(exc).__name__}: {exc}", file=err)
            code = 1
    return {"rc": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _handle(conn: socket.socket, request: Mapping[str, Any]) -> None:
    """In a forked child: do a run/module/stream request on `conn`."""
    _prepare_child(request)
    if request["op"] == "stream":
        # The connection is the module's stdin and stdout from here on.
        os.dup2(conn.fileno(), 0)
        os.dup2(conn.fileno(), 1)
        sys.stdin = os.fdopen(0, "r", closefd=False)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        code = _run_module(request["module"], request.get("args") or [])
        sys.stdout.flush()
        os._exit(code)
    send_message(conn, _capture(request))


def _spawn(request: Mapping[str, Any]) -> int:
    """Fork a long-lived process (own session, output to a log file); its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        _prepare_child(request)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if request.get("argv"):
            os.execvp(request["argv"][0], request["argv"])
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        code = _run_module(request["module"], request.get("args") or [])
    except BaseException as exc:  # the child must never return into the agent's loop
        with contextlib.suppress(Exception):
            print(f"lab.uml_agent: spawn failed: {exc!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Agent:
    def __init__(self, listen: tuple[str, int]) -> None:
        self.server = socket.create_server(listen, reuse_port=False)
        self.spawned: dict[int, int | None] = {}  # pid -> exit code (None: running)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.spawned:
                self.spawned[pid] = os.waitstatus_to_exitcode(status)

    def serve(self) -> None:
        while True:
            self.reap()
            ready, _, _ = select.select([self.server], [], [], 0.2)
            if not ready:
                continue
            conn, _ = self.server.accept()
            try:
                request = receive_message(conn)
                op = request.get("op")
                if op == "shutdown":
                    send_message(conn, {"ok": True})
                    return
                if op == "spawn":
                    pid = _spawn(request)
                    self.spawned[pid] = None
                    send_message(conn, {"pid": pid})
                elif op == "signal":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(request["pid"]), int(request["signal"]))
                    send_message(conn, {"ok": True})
                elif op == "status":
                    self.reap()
                    pid = int(request["pid"])
                    send_message(conn, {"known": pid in self.spawned, "exit": self.spawned.get(pid)})
                elif op in ("run", "stream"):
                    if os.fork() == 0:
                        try:
                            self.server.close()
                            _handle(conn, request)
                        finally:
                            os._exit(0)
                else:
                    send_message(conn, {"error": f"unknown op {op!r}"})
            except (ConnectionError, OSError, ValueError, KeyError) as exc:
                with contextlib.suppress(OSError):
                    send_message(conn, {"error": repr(exc)})
            finally:
                conn.close()


def guest_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.uml_agent")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT inside the guest")
    parser.add_argument("--preload", default="", help="comma-separated modules to import once")
    parser.add_argument("--ready-file", help="written once the agent listens")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    # runpy's note that a preloaded module is run as __main__ again: that is the point of preloading.
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
    started = time.monotonic()
    for module in filter(None, args.preload.split(",")):
        importlib.import_module(module)
    agent = Agent((host, int(port)))
    print(f"lab.uml_agent: listening on {args.listen} after {time.monotonic() - started:.1f}s", flush=True)
    if args.ready_file:
        Path(args.ready_file).write_text("ready\n")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    agent.serve()
    return 0


# ---- the host side -----------------------------------------------------------------------------------------


class GuestStream:
    """A module running in the guest with the connection as its stdin and stdout (a Popen look-alike)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stdin: Any = sock.makefile("w", buffering=1)
        self.stdout: Any = sock.makefile("r")
        self.returncode: int | None = None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.returncode = -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.kill()
        assert self.returncode is not None
        return self.returncode


class GuestProcess:
    """A process the agent spawned (a Popen look-alike: poll, wait, send_signal, kill)."""

    def __init__(self, agent: AgentClient, pid: int) -> None:
        self.agent = agent
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            status = self.agent.request({"op": "status", "pid": self.pid})
            if status.get("exit") is not None:
                self.returncode = int(status["exit"])
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            self.agent.request({"op": "signal", "pid": self.pid, "signal": int(signum)})

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"guest pid {self.pid}", timeout or 0)
            time.sleep(0.1)
        assert self.returncode is not None
        return self.returncode


class AgentClient:
    def __init__(self, address: tuple[str, int], timeout: float = 120.0) -> None:
        self.address = address
        self.timeout = timeout

    def _connect(self, timeout: float) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)

    def request(self, message: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        with self._connect(timeout or self.timeout) as sock:
            send_message(sock, message)
            reply = receive_message(sock)
        if "error" in reply:
            raise RuntimeError(f"guest agent: {reply['error']}")
        return reply

    def wait_ready(self, timeout: float, alive: Any = None) -> None:
        """Until the agent accepts connections (`alive()` False: give up at once)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._connect(2):
                    return
            except OSError:
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    raise
                time.sleep(0.2)

    def run(
        self,
        argv: Sequence[str],
        netns: str | None = None,
        *,
        input: str | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        reply = self.request(
            {
                "op": "run",
                "netns": netns,
                "argv": list(argv),
                "input": input,
                "timeout": timeout,
                "env": env or {},
            },
            timeout=timeout + 30,
        )
        return subprocess.CompletedProcess(list(argv), reply["rc"], reply["stdout"], reply["stderr"])

    def module(
        self,
        module: str,
        args: Sequence[str],
        netns: str | None = None,
        *,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m module args` run to completion in a fork of the agent."""
        request = {"op": "run", "netns": netns, "module": module, "args": list(args), "env": env or {}}
        request["cwd"] = cwd
        reply = self.request(request, timeout=timeout)
        return subprocess.CompletedProcess([module, *args], reply["rc"], reply["stdout"], reply["stderr"])

    def stream(self, module: str, args: Sequence[str], netns: str | None = None) -> GuestStream:
        sock = self._connect(self.timeout)
        send_message(sock, {"op": "stream", "netns": netns, "module": module, "args": list(args)})
        return GuestStream(sock)

    def spawn(
        self,
        log: str | os.PathLike[str],
        *,
        argv: Sequence[str] | None = None,
        module: str | None = None,
        args: Sequence[str] = (),
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> GuestProcess:
        """A long-lived process: a command (exec) or `python -m module` (a fork of the agent)."""
        request: dict[str, Any] = {"op": "spawn", "netns": netns, "log": str(log), "env": env or {}}
        request["cwd"] = cwd
        if argv:
            request["argv"] = list(argv)
        else:
            request["module"], request["args"] = module, list(args)
        return GuestProcess(self, int(self.request(request)["pid"]))

    def shutdown(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, ConnectionError):
            self.request({"op": "shutdown"}, timeout=5)


if __name__ == "__main__":
    sys.exit(guest_main())
