"""What the soak test measured, from the client's request log (bench/soak_traffic.py) and the disruptions'
time windows (pure: no I/O).

A *gap* is the time between two consecutive answers (the ends of successful requests): how long the client
went without one. With no disruption it is about the request period (50 ms at 20 requests/s). A failover
shows as one long gap even when no request fails: a connection whose ARP resolution waits for the new owner
succeeds late, within its timeout, and the answers stop meanwhile. A window's gaps are those that overlap it,
so a gap that began just before a disruption still counts for it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    t: float  # start, CLOCK_MONOTONIC
    ok: bool
    seconds: float
    error: str = ""
    reply: str = ""

    @property
    def end(self) -> float:
        return self.t + self.seconds

    @property
    def pod(self) -> str:
        return self.reply.split()[0] if self.ok and self.reply else ""


@dataclass(frozen=True)
class Window:
    """One disruption: `start` when it was done, `end` when the test saw the system settled again."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Stats:
    name: str
    seconds: float
    requests: int
    failed: int
    longest_gap: float
    slowest: float  # the longest a request took that was answered
    errors: dict[str, int] = field(default_factory=dict)


def parse_log(lines: Iterable[str]) -> list[Request]:
    requests = []
    for line in lines:
        if not line.strip():
            continue
        data = json.loads(line)
        requests.append(
            Request(
                t=float(data["t"]),
                ok=bool(data["ok"]),
                seconds=float(data["seconds"]),
                error=str(data.get("error") or ""),
                reply=str(data.get("reply") or ""),
            )
        )
    return sorted(requests, key=lambda r: r.t)


def gaps(requests: Sequence[Request]) -> list[tuple[float, float]]:
    """(from, to) between consecutive answers; failures at the head or tail of the run give a gap from the
    first request's start (or to the last request's end), a lower bound of the real one."""
    if not requests:
        return []
    marks = sorted(r.end for r in requests if r.ok)
    if not requests[0].ok:
        marks.insert(0, requests[0].t)
    if not requests[-1].ok:
        marks.append(max(r.end for r in requests))
    return list(itertools.pairwise(marks))


def window_stats(requests: Sequence[Request], window: Window) -> Stats:
    inside = [r for r in requests if window.start <= r.t <= window.end]
    overlapping = [b - a for a, b in gaps(requests) if a < window.end and b > window.start]
    return Stats(
        name=window.name,
        seconds=window.end - window.start,
        requests=len(inside),
        failed=sum(not r.ok for r in inside),
        longest_gap=max(overlapping, default=0.0),
        slowest=max((r.seconds for r in inside if r.ok), default=0.0),
        errors=dict(Counter(r.error for r in inside if not r.ok)),
    )


def overall(requests: Sequence[Request]) -> Stats:
    if not requests:
        return Stats("whole run", 0.0, 0, 0, math.inf, 0.0)
    return window_stats(requests, Window("whole run", requests[0].t, max(r.end for r in requests)))


def markdown_table(rows: Sequence[Stats]) -> str:
    out = [
        "| window | seconds | requests | failed | longest gap (s) | slowest answer (s) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "-"
        out.append(
            f"| {s.name} | {s.seconds:.1f} | {s.requests} | {s.failed} | {s.longest_gap:.2f} "
            f"| {s.slowest:.2f} | {errors} |"
        )
    return "\n".join(out)
