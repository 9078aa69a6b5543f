"""The IP address management operator.

LoadBalancer Services get external IPs from MetalLB-compatible address pools.
"""
