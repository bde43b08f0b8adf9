"""Hand a WebSocket upgrade request straight to Autobahn under Daphne.

Upstream: Twisted 26.10.0 (``twisted/web/http.py``) and daphne 4.2.3
(``daphne/http_protocol.py``: what ``WebRequest.process`` does for an
upgrade, repeated here without the request object).
Touches: ``twisted.web.http._GenericHTTPChannelProtocol.dataReceived``
(wrapped; reads ``_negotiatedProtocol``, ``_channel``), Daphne's
``server.ws_factory``, ``server.proxy_forwarded_address_header`` and
``protocol._raw_query_string``, ``daphne.utils.HEADER_NAME_RE`` and
``INVALID_HEADER_VALUE_BYTES``.

Daphne receives every connection as HTTP: twisted.web parses the request
line and headers into a Request, Daphne validates them, writes the request
out again as bytes, and gives those to Autobahn, which parses them once more
for the WebSocket handshake. Here the first bytes of a connection are
looked at once: a complete, well-formed ``GET ... HTTP/1.1`` request with
``Upgrade: websocket`` goes to Autobahn as it arrived, with the same checks
Daphne makes (for the common request, Autobahn's own checks then run over
the lines already split: ``autobahn_handshake``, when applied); anything else (plain
HTTP, a request split over several reads, TLS, proxy headers to honour, a
header Daphne would refuse) takes Daphne's own path unchanged, so every
refusal still looks as Daphne makes it.
"""

from __future__ import annotations

import sys

# Daphne's own rules for header names and values (daphne is a requirement;
# importing this module installs no reactor).
from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES

_PATCHED = "_signaling_handoff"

UPSTREAM = {"twisted": "26.10.0", "daphne": "4.2.3"}
TOUCHES = (
    "twisted.web.http._GenericHTTPChannelProtocol.dataReceived",
    "twisted.web.http._GenericHTTPChannelProtocol._negotiatedProtocol",
    "twisted.web.http._GenericHTTPChannelProtocol._channel",
    "daphne.server.Server.ws_factory",
    "daphne.server.Server.proxy_forwarded_address_header",
    "daphne.ws_protocol.WebSocketProtocol._raw_query_string",
    "daphne.utils.HEADER_NAME_RE",
    "daphne.utils.INVALID_HEADER_VALUE_BYTES",
)


def upgrade_query_string(data: bytes) -> bytes | None:
    """The query string of ``data`` if it is a complete WebSocket upgrade
    request that Daphne would pass to Autobahn, else None."""
    upgrade = parse_upgrade(data)
    return None if upgrade is None else upgrade[0]


def parse_upgrade(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """The query string and the head's lines (request line first) of
    ``data`` if it is a complete WebSocket upgrade request that Daphne
    would pass to Autobahn, else None."""
    if not data.startswith(b"GET "):
        return None
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = data[:head_end].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != b"HTTP/1.1":
        return None
    uri = request_line[1]
    upgrade = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not HEADER_NAME_RE.fullmatch(name):
            return None
        value = value.strip()
        if INVALID_HEADER_VALUE_BYTES.intersection(value):
            return None
        if name.lower() == b"upgrade":
            if upgrade:
                return None
            upgrade = value.lower() == b"websocket"
    if not upgrade or not uri.isascii():
        return None
    return uri.partition(b"?")[2], lines


def apply() -> None:
    http = sys.modules.get("twisted.web.http")
    daphne_http = sys.modules.get("daphne.http_protocol")
    if http is None or daphne_http is None:
        return
    channel_class = http._GenericHTTPChannelProtocol
    if getattr(channel_class, _PATCHED, False):
        return
    from twisted.protocols.policies import ProtocolWrapper

    from signaling.speedups import autobahn_handshake

    original = channel_class.dataReceived

    def data_received(self, data):
        if self._negotiatedProtocol is None and _hand_over(self, data):
            return
        original(self, data)

    def _hand_over(generic, data) -> bool:
        # Only the first bytes of a connection, and only plain HTTP/1.1.
        channel = generic._channel
        transport = channel.transport
        if isinstance(transport, ProtocolWrapper) or getattr(
            transport, "negotiatedProtocol", None
        ):
            return False
        server = getattr(channel.factory, "server", None)
        if server is None or server.proxy_forwarded_address_header:
            return False
        upgrade = parse_upgrade(data)
        if upgrade is None:
            return False
        query_string, lines = upgrade
        # What Daphne's WebRequest.process does for an upgrade, without the
        # request object.
        protocol = server.ws_factory.buildProtocol(transport.getPeer())
        if not protocol:
            return False
        protocol._raw_query_string = query_string
        if getattr(transport, "producer", None) is channel:
            transport.unregisterProducer()
        channel.setTimeout(None)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        if not (autobahn_handshake.applied and autobahn_handshake.respond(protocol, data, lines)):
            protocol.dataReceived(data)
        return True

    channel_class.dataReceived = data_received
    setattr(channel_class, _PATCHED, True)
