"""Autobahn's opening-handshake checks for the common request, in one pass.

Upstream: autobahn 26.11.1 (``autobahn/websocket/protocol.py``:
``WebSocketServerProtocol.processHandshake``, whose checks and end state are
repeated here, with ``parseHttpHeader``'s strict header grammar (#2034),
and its ``forward_error``, copied as ``_forward_error``), with txaio 26.6.1
and Twisted 26.10.0's ``maybeDeferred``.
Touches: ``autobahn.websocket.protocol._is_same_origin``,
``_url_to_origin``, ``WebSocketServerProtocol._parseExtensionsHeader``, and
the protocol attributes processHandshake sets (``http_*``,
``websocket_*``, ``_wskey``, ``data``, ``trafficStats``).

Once twisted_web_handoff has split a complete upgrade request into lines,
Autobahn's processHandshake parses it again (parseHttpHeader), checks it
through urlparse and a dozen debug-log calls that log nothing, and reaches
Daphne's onConnect through txaio. Here the same checks run over the lines already split, and the protocol is left
exactly as processHandshake leaves it before calling onConnect (same
attributes, in the same order, the same ConnectionRequest, the same
callbacks). A request processHandshake would
refuse, or would treat in a way not repeated here (a header block
parseHttpHeader rejects, a header given twice, a version other than 13, an
Origin it does not allow, bytes after the request, a port to check against
the URL, forwarded addresses), is left to processHandshake, so every refusal
still looks as Autobahn makes it.
"""

from __future__ import annotations

import re
from functools import partial
from urllib import parse

import txaio
from autobahn.websocket.protocol import _is_same_origin, _url_to_origin
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import maybeDeferred

_BASE64 = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
_VERSION = 13

# parseHttpHeader's grammar (autobahn 26.11.1, #2034): a field name is a
# token (RFC 9110 5.1), directly followed by the colon; a field value holds
# no control character but HTAB, and no DEL (RFC 9110 5.5); the request line
# holds no control character at all. A header block that breaks one of them
# is rejected there as a whole (a bare CR or LF in a line smuggles headers
# past a front proxy), so it is left to processHandshake.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE_INVALID = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_START_LINE_INVALID = re.compile(r"[\x00-\x1f\x7f]")

UPSTREAM = {"autobahn": "26.11.1", "txaio": "26.6.1", "twisted": "26.10.0"}
TOUCHES = (
    "autobahn.websocket.protocol.WebSocketServerProtocol.processHandshake",
    "autobahn.websocket.protocol.WebSocketServerProtocol._parseExtensionsHeader",
    "autobahn.websocket.protocol._is_same_origin",
    "autobahn.websocket.protocol._url_to_origin",
)

# Whether twisted_web_handoff may hand requests to respond().
applied = False


def apply() -> None:
    global applied
    applied = True


def respond(protocol, data: bytes, lines: list[bytes]) -> bool:
    """Do processHandshake's work for ``data``, a whole request whose head
    split into ``lines`` (request line first, no blank line); return False,
    having changed nothing, when the request must go to Autobahn."""
    if (
        protocol.state != protocol.STATE_CONNECTING
        or protocol.data
        or protocol.logOctets
        or protocol.trackedTimings
        or protocol.trustXForwardedFor
        or protocol.maxConnections > 0
        or _VERSION not in protocol.versions
        # Bytes after the request (frames sent before the 101).
        or data.find(b"\r\n\r\n") != len(data) - 4
    ):
        return False
    status_line = lines[0].decode("iso-8859-1")
    if _START_LINE_INVALID.search(status_line):
        return False
    status_line = status_line.strip(" ")
    request_line = status_line.split()
    if len(request_line) != 3 or request_line[0] != "GET" or request_line[2] != "HTTP/1.1":
        return False
    headers: dict[str, str] = {}
    for line in lines[1:]:
        text = line.decode("iso-8859-1")
        colon = text.find(":")
        if colon < 0 or not _FIELD_NAME.fullmatch(text, 0, colon):
            return False
        # Optional whitespace is SP and HTAB only: str.strip() would also
        # take obs-text such as NEL or NBSP off the value.
        value = text[colon + 1 :].strip(" \t")
        if _FIELD_VALUE_INVALID.search(value):
            return False
        name = text[:colon].lower()
        if name in headers:
            return False
        headers[name] = value

    uri = request_line[1]
    # What urlparse would split off or change: a scheme or host, ;params,
    # a #fragment (refused), characters it removes.
    if not uri.startswith("/") or uri.startswith("//") or any(c in uri for c in ";#\t\r\n"):
        return False
    path, _, query = uri.partition("?")
    params = parse.parse_qs(query) if query else {}

    host = headers.get("host")
    if host is None:
        return False
    host = host.strip()
    if ":" in host and not host.endswith("]"):
        host_name, port = host.rsplit(":", 1)
        try:
            int(port.strip())
        except ValueError:
            return False
        if protocol.factory.externalPort:
            return False
        host = host_name

    if not _has_token(headers.get("upgrade"), "websocket") or not _has_token(
        headers.get("connection"), "upgrade"
    ):
        return False
    try:
        if int(headers.get("sec-websocket-version", "")) != _VERSION:
            return False
    except ValueError:
        return False

    protocols: list[str] = []
    if "sec-websocket-protocol" in headers:
        protocols = [x.strip() for x in headers["sec-websocket-protocol"].split(",")]
        if len(set(protocols)) != len(protocols):
            return False

    origin = ""
    if "origin" in headers:
        origin = headers["origin"].strip()
        factory = protocol.factory
        try:
            origin_tuple = _url_to_origin(origin)
        except ValueError:
            return False
        if not (origin_tuple == "null" and factory.allowNullOrigin) and not _is_same_origin(
            origin_tuple,
            "https" if factory.isSecure else "http",
            factory.externalPort or factory.port,
            protocol.allowedOriginsPatterns,
        ):
            return False

    key = headers.get("sec-websocket-key", "").strip()
    if len(key) != 24 or key[-2:] != "==" or not _BASE64.issuperset(key[:-2]):
        return False

    extensions: list = []
    if "sec-websocket-extensions" in headers:
        try:
            extensions = protocol._parseExtensionsHeader(headers["sec-websocket-extensions"])
        except Exception:
            return False

    # From here on, what _dataReceived and processHandshake do, in order.
    protocol.trafficStats.preopenIncomingOctetsWireLevel += len(data)
    protocol.http_request_data = data
    protocol.http_status_line = status_line
    protocol.http_headers = headers
    protocol.http_request_uri = uri
    protocol.http_request_path = path
    protocol.http_request_params = params
    protocol.http_request_host = host
    protocol.websocket_version = _VERSION
    protocol.websocket_protocols = protocols
    protocol.websocket_origin = origin
    protocol.websocket_extensions = extensions
    protocol.data = b""
    protocol._wskey = key
    request = ConnectionRequest(
        protocol.peer, headers, host, path, params, _VERSION, origin, protocols, extensions
    )
    # txaio.as_future for a plain function, then txaio.add_callbacks.
    connected = maybeDeferred(protocol.onConnect, request)
    connected.addCallbacks(protocol.succeedHandshake, partial(_forward_error, protocol))
    return True


def _has_token(value: str | None, token: str) -> bool:
    return value is not None and any(
        part.strip().lower() == token for part in value.split(",")
    )


def _forward_error(protocol, err):
    # processHandshake's forward_error.
    if isinstance(err.value, ConnectionDeny):
        protocol.failHandshake(err.value.reason, err.value.code)
    else:
        protocol.log.warn("Unexpected exception in onConnect ['{err.value}']", err=err)
        protocol.log.warn("{tb}", tb=txaio.failure_format_traceback(err))
        return protocol.failHandshake(
            f"Internal server error: {err.value}",
            ConnectionDeny.INTERNAL_SERVER_ERROR,
        )
