"""Origin checking for WebSocket handshakes (cross-site WebSocket hijacking).

Browsers always send ``Origin``; native clients such as the Android app send
none. A browser page on another site must not be able to open a socket with
the visitor's cookies and network position, so browser origins are checked
against an explicit allow-list, and the server's own pages (same host) are
always allowed.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

from signaling.ws.connection_info import client_address, header

logger = logging.getLogger(__name__)

ANY_ORIGIN = "*"


def normalize_origin(value: str) -> str | None:
    """Return ``scheme://host[:port]`` in lower case, or None if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return None
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == default_port:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origin_allowed(
    origin: str | None,
    *,
    host: str | None,
    allowed_origins: frozenset[str],
    allow_missing: bool,
) -> bool:
    """Decide whether a handshake with this ``Origin`` header may proceed."""
    if origin is None:
        return allow_missing
    if ANY_ORIGIN in allowed_origins:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        # Covers "null" (sandboxed frames, file:// pages) and garbage.
        return False
    if normalized in allowed_origins:
        return True
    # The server's own pages: the Origin's host:port equals the Host header.
    if host is not None:
        origin_netloc = normalized.split("://", 1)[1]
        for scheme in ("http", "https"):
            if normalize_origin(f"{scheme}://{host}") == f"{scheme}://{origin_netloc}":
                return True
    return False


class OriginCheckMiddleware:
    """ASGI middleware refusing WebSocket handshakes from foreign origins."""

    def __init__(self, application):
        self.application = application
        self.allowed_origins = frozenset(
            normalize_origin(origin) or origin
            for origin in settings.SIGNALING_ALLOWED_ORIGINS
        )
        if ANY_ORIGIN in self.allowed_origins:
            logger.warning(
                "SIGNALING_ALLOWED_ORIGINS contains '*': any web page may open "
                "signaling sockets (cross-site WebSocket hijacking is possible)"
            )

    # Returns the application's coroutine rather than awaiting it, so no
    # frame of this middleware stays suspended for the connection's life.
    _asgi_single_callable = True

    def __call__(self, scope, receive, send):
        origin = header(scope, b"origin")
        if origin_allowed(
            origin,
            host=header(scope, b"host"),
            allowed_origins=self.allowed_origins,
            allow_missing=settings.SIGNALING_ALLOW_MISSING_ORIGIN,
        ):
            return self.application(scope, receive, send)
        logger.info(
            "refused handshake address=%s code=origin_not_allowed origin=%r",
            client_address(scope),
            (origin or "")[:100],
        )
        # Closing before accept makes Daphne answer the handshake with 403.
        return WebsocketDenier()(scope, receive, send)
