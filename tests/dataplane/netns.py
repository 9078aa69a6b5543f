"""Scratch network namespaces for kernel tests, and running a function inside one (in a forked child, so the
test process itself never leaves the host namespace)."""

from __future__ import annotations

import multiprocessing
import secrets
import subprocess
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
PREFIX = "ilbtdp"


@contextmanager
def scratch_netns() -> Iterator[str]:
    """A fresh, empty netns named ilbtdp<hex>, deleted afterwards whatever happened."""
    name = f"{PREFIX}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in(netns: str, *argv: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], input=text, capture_output=True, text=True, timeout=300
    )


def _child(netns: str, fn: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        from pyroute2 import netns as pyroute2_netns

        pyroute2_netns.setns(netns)
        conn.send((True, fn(*args)))
    except BaseException:
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def in_netns(netns: str, fn: Callable[..., T], *args: Any, timeout: float = 300) -> T:
    """fn(*args) run inside `netns` (a forked child); its return value, or its exception as AssertionError."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(netns, fn, args, send))
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise AssertionError(f"{fn.__name__} in {netns} did not finish in {timeout}s")
        ok, value = receive.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    if not ok:
        raise AssertionError(f"{fn.__name__} failed in {netns}:\n{value}")
    result: T = value
    return result


def normalized_save(netns: str, family: int = 4, variant: str = "nft") -> str:
    """iptables-save of a netns without comments and counters, for comparisons."""
    tool = f"{'iptables' if family == 4 else 'ip6tables'}-{variant}-save"
    out = run_in(netns, tool).stdout
    return "\n".join(
        line.split(" [")[0] if line.startswith(":") else line
        for line in out.splitlines()
        if not line.startswith("#")
    )
