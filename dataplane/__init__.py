"""The per-node Service forwarding (iptables, IPVS, nftables). Not built yet: see the issues."""
