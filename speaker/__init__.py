"""The per-node layer-2 speaker (ARP/NDP announcement of LoadBalancer IPs). Not built yet: see the issues."""
