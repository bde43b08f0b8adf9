"""Where WebSocket connections go.

Channels' ProtocolTypeRouter, URLRouter and ``as_asgi()`` would do the
same, but each keeps a coroutine frame (and URLRouter a copy of the scope)
suspended for the whole life of every connection: about 2 KB per idle
connection. Below the one ``async def`` that servers need to see, these are
plain functions that hand back the consumer's own coroutine.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.conf import settings

from signaling.ws.consumers import SignalingConsumer
from signaling.ws.peerjs_consumer import PeerJSConsumer

# The Android app connects to the bare host; /ws/ is an alias for browsers
# behind proxies that route by path.
WEBSOCKET_PATHS = frozenset({"/", "/ws/"})
# PeerJS clients connect to {path}peerjs?key=...&id=...&token=...
PEERJS_PATH = settings.SIGNALING_PEERJS_PATH + "peerjs"


def websocket_application(scope, receive, send):
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    if path in WEBSOCKET_PATHS:
        return SignalingConsumer()(scope, receive, send)
    if path == PEERJS_PATH:
        return PeerJSConsumer()(scope, receive, send)
    # Any other path is refused at the handshake (HTTP 403) rather than
    # raising "No route found" inside the server.
    return WebsocketDenier()(scope, receive, send)


websocket_application._asgi_single_callable = True


def protocol_router(*, http, websocket):
    """ProtocolTypeRouter's dispatch by scope type.

    The one coroutine frame of the chain: servers tell ASGI 3 applications
    from ASGI 2 ones by ``async def`` (uvicorn would call a plain function
    with the scope alone)."""

    async def application(scope, receive, send):
        if scope["type"] == "http":
            return await http(scope, receive, send)
        if scope["type"] == "websocket":
            return await websocket(scope, receive, send)
        raise ValueError(f"No application configured for scope type {scope['type']!r}")

    return application
