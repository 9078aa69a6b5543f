"""IP address and CIDR text, accepted only in the forms MetalLB and the Kubernetes API server accept.

Python's ipaddress is more lenient than both: it takes IPv6 zones (``fe80::1%eth0``, which compare unequal to
the same address without one), IPv4-mapped IPv6 (``::ffff:192.0.2.1``, the same host as 192.0.2.1), netmask
prefixes (``10.0.0.0/255.255.255.0``) and, after our own strip(), surrounding whitespace. An address in one of
those forms would be a second name for an IP, or a status the API server rejects with 422.
"""

from __future__ import annotations

import ipaddress

from common.pools import IPAddress

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _problem(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return f'zone "%{ip.scope_id}" is not allowed'
        if ip.ipv4_mapped is not None:
            return "IPv4-mapped IPv6 addresses are not allowed"
    return None


def parse_ip(text: str) -> IPAddress:
    """One address, exactly as written. Raises ValueError saying why it is not one."""
    if text != text.strip() or any(c.isspace() for c in text):
        raise ValueError("contains whitespace")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IP address") from None
    problem = _problem(ip)
    if problem is not None:
        raise ValueError(problem)
    return ip


def parse_cidr(text: str) -> IPInterface:
    """``address/prefix-length`` as Go's net.ParseCIDR reads it: the address and its network (host bits may be
    set; the caller decides). Raises ValueError saying why it is not one."""
    address, slash, prefix = text.partition("/")
    if not slash:
        raise ValueError("expected address/prefix-length")
    if any(c.isspace() for c in text):
        raise ValueError("contains whitespace")
    if not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 3):
        raise ValueError(f'prefix length must be a number, got "{prefix}"')
    ip = parse_ip(address)
    try:
        return ipaddress.ip_interface(f"{ip}/{int(prefix)}")
    except ValueError as exc:
        raise ValueError(str(exc)) from None
