"""Facts about a connection taken from its ASGI scope."""

from __future__ import annotations

import ipaddress

from django.conf import settings

MAX_USER_AGENT_LENGTH = 512  # enough for any real browser or app string


def header(scope, name: bytes) -> str | None:
    """Return the first header called ``name`` (lower case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def user_agent(scope) -> str:
    return (header(scope, b"user-agent") or "")[:MAX_USER_AGENT_LENGTH]


def client_address(scope) -> str:
    """Return the client's IP address.

    ``X-Forwarded-For`` is believed only when the socket peer is one of the
    configured trusted proxies: anybody can send the header, and Daphne's own
    ``--proxy-headers`` believes it from every client.
    """
    client = scope.get("client")
    peer = client[0] if client else ""
    trusted = settings.SIGNALING_TRUSTED_PROXIES
    if not trusted or peer not in trusted:
        return peer
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    # Walk from the nearest hop back; the first address not added by one of
    # our own proxies is the client.
    for hop in reversed([part.strip() for part in forwarded.split(",")]):
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
