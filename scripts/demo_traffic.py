"""Traffic for scripts/demo.sh, run inside the lab's client namespace (`python -m lab exec client -- ...`).

    python scripts/demo_traffic.py requests HOST:PORT --stop-file F   # a new connection every 20 ms
    python scripts/demo_traffic.py hold HOST:PORT --stop-file F       # one connection, a line every 100 ms

Both run until the stop file exists (or --max-seconds), then print one summary line, `key=value`:
`requests`: how many were answered and failed, the longest time without an answer (the failover gap) and
which pods answered; `hold`: whether the one connection stayed up, how many lines it got back, and its longest
silence. The lab's echo server answers an HTTP request with `<pod> <client>` and a plain line likewise.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections import Counter
from pathlib import Path


def target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def one_request(addr: tuple[str, int], timeout: float) -> str | None:
    """The pod that answered one HTTP GET on a new connection, or None."""
    try:
        with socket.create_connection(addr, timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").split()
    return body[0] if body else None


def run_requests(addr: tuple[str, int], stop: Path, interval: float, limit: float) -> str:
    began = last_ok = time.monotonic()
    answered, failed, gap = 0, 0, 0.0
    pods: Counter[str] = Counter()
    while not stop.exists() and time.monotonic() - began < limit:
        pod = one_request(addr, timeout=0.25)
        now = time.monotonic()
        if pod is None:
            failed += 1
        else:
            answered += 1
            pods[pod] += 1
            gap = max(gap, now - last_ok)
            last_ok = now
        time.sleep(max(0.0, interval - (time.monotonic() - now)))
    seen = ",".join(f"{pod}:{count}" for pod, count in sorted(pods.items()))
    return f"answered={answered} failed={failed} longest_gap_ms={gap * 1000:.0f} pods={seen}"


def run_hold(addr: tuple[str, int], stop: Path, interval: float, limit: float) -> str:
    began = time.monotonic()
    sent = received = 0
    gap, last = 0.0, began
    state = "up"
    pod = ""
    try:
        with socket.create_connection(addr, timeout=5) as sock:
            stream = sock.makefile("rb")
            while not stop.exists() and time.monotonic() - began < limit:
                sock.sendall(b"ping\n")
                sent += 1
                line = stream.readline()
                if not line:
                    state = "closed"
                    break
                received += 1
                pod = line.decode(errors="replace").split()[0]
                now = time.monotonic()
                gap, last = max(gap, now - last), now
                time.sleep(interval)
    except OSError as exc:
        state = f"broken({exc.__class__.__name__})"
    return (
        f"connection={state} pod={pod} sent={sent} received={received} "
        f"seconds={time.monotonic() - began:.1f} longest_silence_ms={gap * 1000:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("kind", choices=("requests", "hold"))
    parser.add_argument("target", type=target, help="HOST:PORT")
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.kind == "requests":
        summary = run_requests(args.target, args.stop_file, args.interval or 0.02, args.max_seconds)
    else:
        summary = run_hold(args.target, args.stop_file, args.interval or 0.1, args.max_seconds)
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
