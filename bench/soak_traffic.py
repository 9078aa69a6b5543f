"""Steady client traffic for the soak test, run inside the client's network namespace:

    ip netns exec <client-ns> python -m bench.soak_traffic HOST PORT --out FILE [--rate 20] [--timeout 1]

Opens one TCP connection every 1/rate seconds on a fixed schedule (a slow or failed request never delays the
next one), sends a line and waits for the lab echo server's reply line `<pod> <client ip>:<port>`, all within
`timeout`. Each request is one JSON line in FILE (flushed at once, so a killed run keeps what it measured):

    {"t": <start, CLOCK_MONOTONIC>, "ok": true, "seconds": 0.002, "error": "", "reply": "nginx-... 192..."}

CLOCK_MONOTONIC is one clock for every process on the host (network namespaces do not change it), so the
caller can lay its own time.monotonic() marks over these lines. Runs until SIGTERM or SIGINT, then waits for
the requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
import sys
import time
from typing import IO, Any


def _error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


async def _exchange(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"soak\n")
        await writer.drain()
        return (await reader.readline()).decode(errors="replace").strip()
    finally:
        writer.close()


async def request(host: str, port: int, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        reply = await asyncio.wait_for(_exchange(host, port), timeout)
        result = {"ok": bool(reply), "error": "" if reply else "empty", "reply": reply}
    except Exception as exc:  # every failure is a measured outcome, not a crash of the load generator
        result = {"ok": False, "error": _error(exc), "reply": ""}
    return {"t": round(started, 6), "seconds": round(time.monotonic() - started, 6), **result}


async def run(host: str, port: int, rate: float, timeout: float, out: IO[str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    period = 1.0 / rate
    began = time.monotonic()
    in_flight: set[asyncio.Task[None]] = set()

    async def one() -> None:
        out.write(json.dumps(await request(host, port, timeout)) + "\n")
        out.flush()

    sent = 0
    while not stop.is_set():
        task = asyncio.create_task(one())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        sent += 1
        delay = began + sent * period - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    if in_flight:
        await asyncio.wait(in_flight)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_traffic", description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--out", required=True, help="JSON lines, one per request")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds for connect, send and reply")
    args = parser.parse_args(argv)
    with open(args.out, "a", buffering=1) as out:
        sent = asyncio.run(run(args.host, args.port, args.rate, args.timeout, out))
    print(f"event=stopped requests={sent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
