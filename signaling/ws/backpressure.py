"""Backpressure: reading a client's socket less, or not at all, while it
sends faster than it is served.

ASGI has no such control. Under Daphne the application's ``send`` is
``functools.partial(Server.handle_reply, protocol)``, and the protocol's
``transport`` is a Twisted TCP transport: ``pauseProducing`` and
``resumeProducing`` (Twisted's public IPushProducer interface) stop and
restart reading, and its ``bufferSize`` is how much one read takes. That is
all used here, read-only on Daphne's side, so it works the same with
speedups on or off. Under servers that expose no transport (uvicorn,
granian, the test communicator) every function here is a no-op.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

# Scope key holding the connection's Twisted transport under Daphne.
READ_PAUSE_SCOPE_KEY = "signaling.transport"

# How much Twisted reads from a WebSocket in one go (its default: 64 KiB).
# Autobahn parses every frame of a read, and the consumer handles them all,
# before anything else runs: 64 KiB of small frames is ~800 frames during
# which the other clients wait. 4 KiB holds an SDP-sized frame or ~50 small
# ones; bigger messages take several reads. Once a client hits the rate
# limit its reads shrink to 2 KiB.
WEBSOCKET_READ_BYTES = 4096
THROTTLED_READ_BYTES = 2048

# How long the server waits for a client to answer its close frame before
# dropping the socket. Autobahn's default is 1 s and its timers are batched
# into whole seconds, so the wait was anywhere between 0 and 1 s: a client
# busy writing (a flooder closed with 4008) was cut off with a TCP reset,
# which discards what it had not read yet (its rate_limited Errors and the
# close frame), so it learnt nothing. Set with Autobahn's public
# setProtocolOptions on Daphne's factory.
CLOSE_HANDSHAKE_TIMEOUT_SECONDS = 5


# Logged once per process when Daphne serves but its transport cannot be
# reached (a Daphne release that changed how it builds ``send``).
UNAVAILABLE_MESSAGE = (
    "read backpressure unavailable: Daphne's send no longer leads to its "
    "connection's transport (daphne %s); flooding clients are refused but "
    "no longer paused (SECURITY.md, Read backpressure)"
)
_unavailable_logged = False


def attach(scope: dict, send) -> None:
    """Called once a WebSocket connection's application starts: remember
    its transport in the scope and read it in small pieces."""
    protocol = _daphne_protocol(send)
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "pauseProducing"):
        if _sent_by_daphne(send):
            _log_unavailable()
        return
    scope[READ_PAUSE_SCOPE_KEY] = transport
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = WEBSOCKET_READ_BYTES
    if getattr(protocol, "closeHandshakeTimeout", None) != CLOSE_HANDSHAKE_TIMEOUT_SECONDS:
        # Autobahn copies its factory's options into each new connection:
        # this one, and the factory for the next ones.
        factory = getattr(protocol, "factory", None)
        if hasattr(factory, "setProtocolOptions"):
            # allowNullOrigin defaults to False in setProtocolOptions (not
            # "unchanged"): pass Daphne's value on, or every later handshake
            # from a "null" origin is refused by Autobahn with a bare 400
            # instead of reaching the origin check (403 and a log line).
            factory.setProtocolOptions(
                closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT_SECONDS,
                allowNullOrigin=getattr(factory, "allowNullOrigin", True),
            )
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT_SECONDS


def _sent_by_daphne(send) -> bool:
    """Whether ``send`` comes from Daphne's server, whatever its shape."""
    func = getattr(send, "func", send)
    return getattr(func, "__module__", "").startswith("daphne.")


def _log_unavailable() -> None:
    global _unavailable_logged
    if _unavailable_logged:
        return
    _unavailable_logged = True
    from importlib.metadata import version

    logger.error(UNAVAILABLE_MESSAGE, version("daphne"))


def _daphne_protocol(send):
    args = getattr(send, "args", None)
    if not args:
        return None
    ws_protocol = sys.modules.get("daphne.ws_protocol")
    if ws_protocol is None or not isinstance(args[0], ws_protocol.WebSocketProtocol):
        return None
    return args[0]


def read_slowly(scope) -> None:
    """Read this client's socket in small pieces from now on (see
    THROTTLED_READ_BYTES). A no-op under servers that do not expose their
    transport."""
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is not None and hasattr(transport, "bufferSize"):
        transport.bufferSize = THROTTLED_READ_BYTES


def resume_reading(scope) -> None:
    """Read the client's socket again after ``pause_reading(scope, None)``."""
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is not None:
        transport.resumeProducing()


def pause_reading(scope, seconds: float | None) -> None:
    """Stop reading the client's socket for ``seconds`` (None: until
    ``resume_reading``).

    The kernel's buffers then fill and the client's sends block, instead of
    Daphne parsing every frame of a flood that will be refused anyway. A
    no-op under servers that do not expose their transport.
    """
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is None:
        return
    transport.pauseProducing()
    if seconds is not None:
        reactor = sys.modules["twisted.internet.reactor"]
        reactor.callLater(seconds, transport.resumeProducing)
