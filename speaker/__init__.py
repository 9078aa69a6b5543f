"""The per-node layer-2 speaker: answers ARP and NDP for the LoadBalancer IPs this node wins.

See docs/speaker.md.
"""
