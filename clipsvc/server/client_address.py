"""Which client sent a request, for its log line: the connection's address, or what trusted proxies say it was.

Behind a load balancer every connection comes from the balancer, and only its `X-Forwarded-For` names the client.
Anyone can send that header, though, so it is believed only from the proxies an operator lists in
CLIP_TRUSTED_PROXIES, and only as far as they vouch for it: the list is read from the right (each proxy appends the
address it was connected from), past every trusted proxy, and the first address that is not one is the client. A
client can put anything at the left of the header; that part is never reached while a trusted proxy appended the
real address after it. With no proxies listed, or from a connection that is not one of them, the connection's own
address is the client and the header is ignored. This is the common algorithm (nginx's `real_ip_recursive`,
Rack's and Go's `X-Forwarded-For` readers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FORWARDED_FOR = "X-Forwarded-For"


def parse_address(text: str) -> Address | None:
    """An IPv4 or IPv6 address (an IPv4 one inside IPv6, ::ffff:10.0.0.1, as the IPv4 one), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


class TrustedProxies:
    """CLIP_TRUSTED_PROXIES, parsed once per worker: the networks whose X-Forwarded-For is believed."""

    def __init__(self, networks: Iterable[str] = ()):
        self.networks = tuple(ipaddress.ip_network(network) for network in networks)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: `peer` (REMOTE_ADDR) unless it is a trusted proxy, in which case the first address
        from the right of `forwarded_for` that is not a trusted proxy. An entry that is not an address (a port, a
        name, `unknown`, an empty one) stops the walk: the last address reached, a trusted proxy's, is the one this
        service can vouch for. Every address trusted: the leftmost."""
        address = parse_address(peer or "")
        if address is None:  # not an IP connection (a Unix socket): nothing to look up
            return peer
        hops = forwarded_for.split(",") if forwarded_for and self.trusts(address) else []
        for hop in reversed(hops):
            forwarded = parse_address(hop)
            if forwarded is None:
                break
            address = forwarded
            if not self.trusts(address):
                break
        return str(address)
