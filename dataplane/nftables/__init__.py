"""nftables mode: one table per family (`ip ironlb`, `ip6 ironlb`), constant-time dispatch through verdict
maps, endpoints in maps chosen by numgen, and partial syncs that send only what changed.

ruleset (what to write, pure), transaction (nft transactions and the record of what was written, pure),
kernel (libnftables, `nft -f` and netlink reads), backend (the Backend the sync loop drives).
See docs/dataplane.md and docs/benchmarks.md.
"""
