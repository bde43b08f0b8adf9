"""Facts about a connection taken from its ASGI scope."""

from __future__ import annotations

import functools

from django.conf import settings

from signaling.core.forwarded import TrustedProxies, forwarded_client

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
    configured trusted proxies (signaling/core/forwarded.py): anybody can send the
    header, and Daphne's own ``--proxy-headers`` believes it from every
    client.
    """
    client = scope.get("client")
    peer = client[0] if client else ""
    return forwarded_client(
        peer,
        forwarded_for(scope),
        trusted_proxies(settings.SIGNALING_TRUSTED_PROXIES),
    )


def forwarded_for(scope) -> str | None:
    """Every ``X-Forwarded-For`` header, joined in order (RFC 9110 5.3).

    A proxy may add its own header line instead of extending the client's;
    reading only the first line would then read the client's.
    """
    values = [
        value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key == b"x-forwarded-for"
    ]
    return ",".join(values) if values else None


@functools.lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies.parse(entries)


def trusted_proxies(entries) -> TrustedProxies:
    """The parsed setting, parsed once per distinct value (checked at start
    by the app config, so a bad entry never reaches a connection)."""
    return _parsed(entries if isinstance(entries, tuple) else tuple(entries))
