"""ironlb's dataplane: the per-node kube-proxy replacement (ClusterIP, NodePort, LoadBalancer, external IPs).

Pure core: model (service ports and endpoints), tracker (events to snapshots, and what changed), selection
(which endpoints a port uses on this node), backend (the interface each mode implements). Modes: iptables
(dataplane.iptables); nftables and IPVS follow. See docs/dataplane.md.
"""
