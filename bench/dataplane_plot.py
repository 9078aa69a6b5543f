"""Plot full-sync time against the number of Services for each dataplane mode, from the benchmark's JSON.

    pip install -e '.[bench]'     # matplotlib
    python -m bench.dataplane_plot docs/dataplane-bench.json docs/dataplane-sync-time.png

The input is a JSON list of the rows `bench/dataplane_bench.py --json` prints (mode, services, full_sync_s,
floor_s, update_s). kube-proxy's figures from shared/reference/kube-proxy.md are drawn beside ours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

# kube-proxy v1.36 on this kind of machine (shared/reference/kube-proxy.md), by Services: full sync seconds,
# one-Service update milliseconds.
KUBE_PROXY_FULL_SYNC = {
    "nftables": {10000: 39.0},
    "iptables": {5000: 378.0},  # and not done in 900 s at 10,000
}
KUBE_PROXY_UPDATE_MS = {"nftables": {10000: 6200.0}, "iptables": {10000: 1200.0}}  # iptables: 1.2-4.3 s


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, Any]] = json.loads(args.results.read_text())
    modes = sorted({row["mode"] for row in rows})
    figure, (full, update) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in modes:
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["services"])
        counts = [r["services"] for r in mine]
        (line,) = full.plot(counts, [r["full_sync_s"] for r in mine], marker="o", label=f"ironlb {mode}")
        full.plot(
            counts,
            [r["floor_s"] for r in mine],
            linestyle=":",
            color=line.get_color(),
            label=f"{mode} floor ({'nft -f' if mode == 'nftables' else 'iptables-restore'})",
        )
        update.plot(
            counts,
            [statistics.median(r["update_s"]) * 1000 for r in mine],
            marker="o",
            color=line.get_color(),
            label=f"ironlb {mode}",
        )
        for axes, figures in ((full, KUBE_PROXY_FULL_SYNC), (update, KUBE_PROXY_UPDATE_MS)):
            theirs = figures.get(mode, {})
            axes.scatter(
                list(theirs),
                list(theirs.values()),
                marker="x",
                s=60,
                color=line.get_color(),
                label=f"kube-proxy {mode}",
            )
    for axes, label, title in (
        (full, "full sync (s, log)", "Full sync"),
        (update, "one-Service update (ms, log)", "One-Service update (median)"),
    ):
        axes.set_yscale("log")
        axes.set_xlabel("Services (10 endpoints each)")
        axes.set_ylabel(label)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
