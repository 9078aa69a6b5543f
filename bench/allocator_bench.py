"""Allocator benchmark: ironlb's interval-set allocator against a first-free linear scan (MetalLB's method).

Run from the repository root:

    .venv/bin/python -m bench.allocator_bench [--allocations 100000] [--baseline-allocations 20000]
                                              [--update-docs]

Both run in this process on the same pool (10.0.0.0/8, 2^24 addresses). The baseline mirrors MetalLB's
AllocateFromPool: scan the pool from its first address, skipping addresses in a set of used ones; it works
on plain integers, which flatters it (MetalLB builds a net.IP and map keys per step). Its cost grows with the
number of addresses in use, so its full 100,000-allocation run is quadratic; by default it runs the first
``--baseline-allocations`` allocations and then times single allocations at fixed fill levels (the marginal
cost a new Service pays when that many addresses are already taken). ``--baseline-allocations 100000`` runs
it in full (minutes).

Memory: tracemalloc of an Allocator over a 2^20-address IPv6 pool against one over a /28, each after 16
allocations.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from common.config import build_config, parse_address_range
from common.pools import Config, Pool
from controller.allocator import Allocator
from controller.requests import ServiceRequest

POOL_CIDR = "10.0.0.0/8"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## Allocator"


def make_config(*addresses: str) -> Config:
    pool = Pool(name="bench", ranges=tuple(parse_address_range(a) for a in addresses))
    return build_config((pool,), ())


def make_request(n: int, version: int = 4) -> ServiceRequest:
    return ServiceRequest(
        key=f"bench/svc-{n}",
        namespace="bench",
        labels=(),
        namespace_labels=(),
        requested_ips=(),
        pool=None,
        sharing_key=None,
        ports=((80, "TCP"),),
        external_traffic_policy="Cluster",
        selector=(("app", f"svc-{n}"),),
        families=(version,),
        require_all_families=False,
    )


def time_each(count: int, allocate: Callable[[int], object]) -> list[int]:
    """Nanoseconds per call of allocate(i) for i in range(count); the GC is paused for both contenders."""
    samples = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(count):
            start = clock()
            allocate(i)
            samples.append(clock() - start)
    finally:
        gc.enable()
    return samples


def bench_interval_allocator(count: int) -> list[int]:
    allocator = Allocator(make_config(POOL_CIDR))
    requests = [make_request(i) for i in range(count)]
    samples = time_each(count, lambda i: allocator.assign(requests[i]))
    stats = allocator.pool_stats()["bench"]
    assert stats.in_use == count and allocator.consistency_problems() == []
    return samples


class LinearScanPool:
    """The baseline: first free address found by scanning from the pool start, used addresses in a set."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.used: set[int] = set()

    def allocate(self) -> int:
        candidate = self.first
        used = self.used
        while candidate in used:
            candidate += 1
        if candidate > self.last:
            raise RuntimeError("pool exhausted")
        used.add(candidate)
        return candidate


def pool_bounds() -> tuple[int, int]:
    r = parse_address_range(POOL_CIDR)
    return int(r.first), int(r.last)


def bench_linear_scan(count: int) -> list[int]:
    pool = LinearScanPool(*pool_bounds())
    return time_each(count, lambda _: pool.allocate())


def linear_scan_at_fill(fill: int, repetitions: int = 5) -> list[int]:
    """Time one allocation when ``fill`` addresses from the pool start are already in use."""
    first, last = pool_bounds()
    samples = []
    for _ in range(repetitions):
        pool = LinearScanPool(first, last)
        pool.used = set(range(first, first + fill))
        samples.extend(time_each(1, lambda _, pool=pool: pool.allocate()))  # type: ignore[misc]
    return samples


def interval_at_fill(samples: list[int], fill: int, window: int = 1000) -> list[int]:
    """Our allocator's samples just before the ``fill``-th allocation (to show fill does not matter)."""
    low = max(0, min(fill, len(samples)) - window)
    return samples[low : low + window]


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[int]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(samples) / 1000,
        "p50": percentile(samples, 0.50) / 1000,
        "p99": percentile(samples, 0.99) / 1000,
    }


def allocator_memory(addresses: str, version: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        allocator = Allocator(make_config(addresses))
        for i in range(16):
            allocator.assign(make_request(i, version))
        used = tracemalloc.get_traced_memory()[0] - before
        assert allocator.pool_stats()["bench"].in_use == 16
        return used
    finally:
        tracemalloc.stop()


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {model}, Python {platform.python_version()}, {platform.system()}"


def render(args: argparse.Namespace) -> str:
    ours = bench_interval_allocator(args.allocations)
    baseline_count = min(args.baseline_allocations, args.allocations)
    scan = bench_linear_scan(baseline_count)
    ours_same = ours[:baseline_count]
    fills = [f for f in (1_000, 10_000, 50_000, args.allocations - 1) if f < args.allocations]

    lines = [
        SECTION,
        "",
        f"Machine: {machine()}.",
        "Shared with other jobs while measured: treat the numbers as indicative.",
        "",
        "Rerun: `.venv/bin/python -m bench.allocator_bench --update-docs` (with",
        "`--baseline-allocations 100000` for the full quadratic baseline run; it takes minutes).",
        "",
        f"Pool {POOL_CIDR} (2^24 addresses), one IPv4 Service per allocation, time per allocation in µs.",
        "",
        "| run | allocations | mean | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(name: str, samples: list[int]) -> str:
        s = summary(samples)
        return f"| {name} | {len(samples):,} | {s['mean']:.2f} | {s['p50']:.2f} | {s['p99']:.2f} |"

    lines.append(row("ironlb interval allocator (Allocator.assign)", ours))
    if baseline_count < len(ours):
        lines.append(row("ironlb interval allocator, same first allocations", ours_same))
    lines.append(row("first-free linear scan (MetalLB's method)", scan))
    ratio = statistics.fmean(scan) / statistics.fmean(ours_same)
    lines += [
        "",
        f"Over the same first {baseline_count:,} allocations the linear scan is **{ratio:.0f}x** slower on "
        "average (mean/mean).",
        "",
        "Marginal cost of one more allocation when N addresses are already in use (µs; scan: median of 5;",
        "ours: median of the 1,000 allocations before the N-th in the run above):",
        "",
        "| N in use | linear scan | ironlb | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for fill in fills:
        scan_fill = statistics.median(linear_scan_at_fill(fill)) / 1000
        ours_fill = statistics.median(interval_at_fill(ours, fill)) / 1000
        lines.append(f"| {fill:,} | {scan_fill:,.1f} | {ours_fill:.2f} | {scan_fill / ours_fill:,.0f}x |")

    v6_big = allocator_memory("fd00::/108", 6)
    v4_small = allocator_memory("10.0.0.0/28", 4)
    lines += [
        "",
        "Memory (tracemalloc, the whole Allocator after 16 allocations):",
        "",
        "| pool | addresses | bytes |",
        "|---|---:|---:|",
        f"| fd00::/108 (IPv6) | {2**20:,} | {v6_big:,} |",
        f"| 10.0.0.0/28 | 16 | {v4_small:,} |",
        "",
        f"Ratio {v6_big / v4_small:.2f}: the free set is a list of free intervals, so its size follows the",
        "number of holes, not the pool size.",
        "",
    ]
    return "\n".join(lines)


def update_docs(section: str) -> None:
    """Replace only the "## Allocator" section of docs/benchmarks.md (other sections belong to others)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--allocations", type=int, default=100_000)
    parser.add_argument("--baseline-allocations", type=int, default=20_000)
    parser.add_argument(
        "--update-docs", action="store_true", help=f"rewrite the {SECTION!r} section of {DOCS}"
    )
    args = parser.parse_args(argv)
    section = render(args)
    print(section)
    if args.update_docs:
        update_docs(section)
        print(f"updated {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
