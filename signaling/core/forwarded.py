"""Which proxies to believe, and the client address they vouch for.

Pure: no Django, no I/O. ``SIGNALING_TRUSTED_PROXIES`` is parsed once into
``TrustedProxies``; ``forwarded_client`` then runs per connection.

The rules are those of every ``X-Forwarded-For`` consumer that cannot be
fooled by its clients (uvicorn, gunicorn, Express ``trust proxy``, Werkzeug
``ProxyFix``): each proxy appends the address it received the request from,
so only the right-hand end of the header was written by our own proxies. The
walk starts at the socket peer and moves left while the address at hand is
a trusted proxy; the first address that is not one is the client. Anything
further left was written by the client and is never read.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# "The immediate peer is always a proxy" (uvicorn's --forwarded-allow-ips
# spelling). For a platform whose proxy addresses are private and unpublished.
ANY_PEER = "*"


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Proxies whose ``X-Forwarded-For`` is believed.

    ``any_peer``: the socket peer is trusted whatever its address, but an
    address inside the header is skipped only if it is listed; so ``*``
    alone believes exactly one hop (the rightmost entry).
    """

    any_peer: bool = False
    # Single addresses apart from ranges: a set look-up, not a scan.
    addresses: frozenset[IPAddress] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """Parse ``*``, addresses and CIDR ranges; raise ValueError naming a
        bad entry."""
        any_peer = False
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip()
            if entry == ANY_PEER:
                any_peer = True
            elif "/" in entry:
                try:
                    # strict: "10.1.2.3/8" is refused rather than read as
                    # 10.0.0.0/8, since a typo here widens trust silently.
                    network = ipaddress.ip_network(entry)
                except ValueError as error:
                    raise ValueError(
                        f"{entry!r} is not a CIDR range: {error}"
                    ) from None
                if network.num_addresses == 1:
                    addresses.add(network.network_address)
                else:
                    networks.append(network)
            else:
                try:
                    address = ipaddress.ip_address(entry)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not an IP address, a CIDR range or {ANY_PEER}"
                    ) from None
                addresses.add(address)
        return cls(
            any_peer=any_peer, addresses=frozenset(addresses), networks=tuple(networks)
        )

    def __bool__(self) -> bool:
        return self.any_peer or bool(self.addresses) or bool(self.networks)

    def listed(self, address: IPAddress) -> bool:
        """Return whether ``address`` is a listed proxy."""
        return address in self.addresses or any(
            address in network for network in self.networks
        )


def parse_address(text: str) -> IPAddress | None:
    """Return the IP address in ``text``, or None.

    Besides a bare address, takes the two forms some proxies write with a
    port, which cannot be mistaken for anything else: ``[v6]`` or
    ``[v6]:port``, and ``v4:port``. An IPv4-mapped IPv6 address (a dual-stack
    socket's view of an IPv4 peer) is returned as the IPv4 address, so one
    client has one address whichever way it arrived.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not _is_port_suffix(rest)):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port_suffix(":" + port):
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# Per connection the same few strings recur (the proxies' own addresses,
# clients reconnecting); parsing one costs several microseconds, a cache hit
# a tenth of one. Bounded, so a stream of distinct forged values only evicts.
_parse_cached = functools.lru_cache(maxsize=4096)(parse_address)


def _is_port_suffix(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and len(text) <= 6


def forwarded_client(
    peer: str, forwarded_for: str | None, proxies: TrustedProxies
) -> str:
    """Return the client address for a request from socket peer ``peer``
    carrying ``X-Forwarded-For: forwarded_for``.

    A header from a peer that is not trusted is ignored. From a trusted peer
    the header is walked from the right, skipping listed proxies; the first
    other address is the client. If an entry in the part written by our own
    proxies is not an IP address (``unknown``, a hostname, garbage), the walk
    stops and the last address it reached, a proxy of ours, is the answer:
    nothing left of an unreadable entry can be attributed to anyone, and a
    proxy's address can only make limits stricter, never let a client choose
    the address it is judged by. The same holds when every entry is a listed
    proxy, or the header is empty.
    """
    if not proxies or not forwarded_for:
        return peer
    peer_address = _parse_cached(peer)
    if peer_address is None or not (proxies.any_peer or proxies.listed(peer_address)):
        return peer
    current = peer_address
    for hop in reversed(forwarded_for.split(",")):
        address = _parse_cached(hop)
        if address is None:
            break
        current = address
        if not proxies.listed(current):
            break
    return str(current)
