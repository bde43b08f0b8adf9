"""The opening handshake done in one pass (signaling/speedups/autobahn_handshake.py)
must leave an Autobahn protocol exactly as Autobahn's processHandshake
leaves it, and leave every other request to processHandshake untouched."""

import base64

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from signaling.speedups.autobahn_handshake import respond
from signaling.speedups.twisted_web_handoff import parse_upgrade

KEY = base64.b64encode(b"0123456789abcdef")


def request(*headers: bytes, target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


BASIC = (
    b"Host: localhost",
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Key: " + KEY,
    b"Sec-WebSocket-Version: 13",
)

# Requests the one-pass handshake must take, and answer as Autobahn does.
TAKEN = {
    "basic": request(*BASIC),
    # What OkHttp (the Android app's client) sends: no Origin.
    "okhttp": request(
        b"Host: signaling.example.com",
        b"Connection: Upgrade",
        b"Upgrade: websocket",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Extensions: permessage-deflate",
        b"Accept-Encoding: gzip",
        b"User-Agent: okhttp/4.12.0",
    ),
    # What Chromium sends from a page on the same host.
    "browser": request(
        b"Host: localhost:8000",
        b"Connection: Upgrade",
        b"Pragma: no-cache",
        b"Cache-Control: no-cache",
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
        b"Upgrade: websocket",
        b"Origin: http://localhost:8000",
        b"Sec-WebSocket-Version: 13",
        b"Accept-Encoding: gzip, deflate, br",
        b"Accept-Language: en-US,en;q=0.9",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        target=b"/?a=1&b=2&a=3",
    ),
    "subprotocols": request(*BASIC, b"Sec-WebSocket-Protocol: chat, superchat"),
    "ipv6 host with port": request(b"Host: [::1]:8000", *BASIC[1:]),
    "ipv6 host": request(b"Host: [::1]", *BASIC[1:]),
    "null origin": request(*BASIC, b"Origin: null"),
    "other origin": request(*BASIC, b"Origin: https://elsewhere.example:8443"),
    "spaces and case": request(
        b"host:   localhost  ",
        b"UPGRADE:\tWebSocket",
        b"connection: keep-alive, Upgrade",
        b"sec-websocket-key:  " + KEY,
        b"sec-websocket-version: 13",
    ),
    "latin-1 value": request(*BASIC, b"X-Name: caf\xe9"),
    # obs-text is kept in a value (only SP and HTAB are trimmed), and the
    # Host, Origin and key read from it are trimmed of it.
    "no-break spaces around values": request(
        b"Host: localhost\xa0",
        *BASIC[1:3],
        b"Sec-WebSocket-Key: " + KEY + b"\xa0",
        BASIC[4],
        b"Origin: http://localhost\xa0",
        b"X-Name: \xa0caf\xe9\xa0",
    ),
    "ws path": request(*BASIC, target=b"/ws/?token=x%20y"),
}

# Header blocks Autobahn's parseHttpHeader rejects as a whole (autobahn
# 26.11.1, #2034); those with a bare CR or LF would let a client add an
# X-Forwarded-For that a front proxy sees as part of another header's value.
REJECTED = {
    "bare LF in a value": request(*BASIC, b"X-A: 1\nX-Forwarded-For: 192.0.2.1"),
    "bare CR in a value": request(*BASIC, b"X-A: 1\rX-Forwarded-For: 192.0.2.1"),
    "NUL in a value": request(*BASIC, b"X-A: a\x00b"),
    "DEL in a value": request(*BASIC, b"X-A: a\x7fb"),
    "control character in the target": request(*BASIC, target=b"/\x01"),
    # Twisted's handoff already refuses these; respond() must too.
    "whitespace before the colon": request(*BASIC, b"X-A : 1"),
    "obs-fold": request(*BASIC, b"X-A: 1", b" folded: 2"),
    "name that is no token": request(*BASIC, b"X(A): 1"),
}

# Requests it must leave to processHandshake (most are refused there).
LEFT = {
    "no key": request(*BASIC[:3], BASIC[4]),
    "short key": request(*BASIC[:3], b"Sec-WebSocket-Key: abc==", BASIC[4]),
    "bad key character": request(
        *BASIC[:3], b"Sec-WebSocket-Key: " + KEY[:5] + b"!" + KEY[6:], BASIC[4]
    ),
    "version 8": request(*BASIC[:4], b"Sec-WebSocket-Version: 8"),
    "no version": request(*BASIC[:4]),
    "no connection upgrade": request(
        BASIC[0], BASIC[1], b"Connection: keep-alive", *BASIC[3:]
    ),
    "no host": request(*BASIC[1:]),
    "bad host port": request(b"Host: localhost:http", *BASIC[1:]),
    "header twice": request(*BASIC, b"X-A: 1", b"X-A: 2"),
    "fragment": request(*BASIC, target=b"/#x"),
    "path parameters": request(*BASIC, target=b"/;p"),
    "absolute form": request(*BASIC, target=b"//host/"),
    "bad origin": request(*BASIC, b"Origin: http://"),
    "duplicate subprotocol": request(*BASIC, b"Sec-WebSocket-Protocol: a, a"),
    # A client may not send frames before the 101; one that does gets
    # Autobahn's handling of them.
    "bytes after the request": request(*BASIC) + b"\x81\x80abcd",
    **{
        name: data
        for name, data in REJECTED.items()
        if parse_upgrade(data) is not None
    },
}


class Transport(StringTransport):
    """Twisted's test transport, unregistering a producer as a TCP one does
    (no error when none was registered)."""

    def unregisterProducer(self):
        self.producer = None
        self.streaming = None


class Recording(WebSocketServerProtocol):
    def onConnect(self, request):
        self.request_seen = request
        return None


def connected():
    # Daphne's options that the handshake reads.
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(allowNullOrigin=True, openHandshakeTimeout=0)
    factory.protocol = Recording
    protocol = factory.buildProtocol(None)
    transport = Transport()
    protocol.makeConnection(transport)
    return protocol, transport


def plain_state(protocol) -> list:
    """The attributes that hold plain values, in their order."""
    plain = (str, bytes, int, float, bool, type(None), list, dict, tuple)
    return [
        (name, value) for name, value in vars(protocol).items() if isinstance(value, plain)
    ]


def fields(request) -> dict:
    return {name: getattr(request, name) for name in type(request).__slots__}


@pytest.mark.parametrize("name", TAKEN)
def test_a_common_request_is_answered_as_autobahn_answers_it(name):
    data = TAKEN[name]
    by_autobahn, autobahn_wire = connected()
    by_autobahn.dataReceived(data)
    in_one_pass, one_pass_wire = connected()
    upgrade = parse_upgrade(data)
    assert upgrade is not None
    assert respond(in_one_pass, data, upgrade[1]) is True

    assert one_pass_wire.value().startswith(b"HTTP/1.1 101 ")
    assert one_pass_wire.value() == autobahn_wire.value()
    assert plain_state(in_one_pass) == plain_state(by_autobahn)
    assert fields(in_one_pass.request_seen) == fields(by_autobahn.request_seen)
    assert (
        in_one_pass.trafficStats.preopenIncomingOctetsWireLevel
        == by_autobahn.trafficStats.preopenIncomingOctetsWireLevel
    )


@pytest.mark.parametrize("name", LEFT)
def test_anything_else_is_left_to_autobahn_untouched(name):
    data = LEFT[name]
    protocol, wire = connected()
    before = dict(vars(protocol))
    upgrade = parse_upgrade(data)
    assert upgrade is not None
    assert respond(protocol, data, upgrade[1]) is False
    assert vars(protocol) == before
    assert wire.value() == b""


def test_a_refusal_in_on_connect_is_answered_as_autobahn_answers_it():
    from autobahn.websocket.types import ConnectionDeny

    class Refusing(Recording):
        def onConnect(self, request):
            raise ConnectionDeny(403, "not here")

    wires = []
    for lean in (False, True):
        protocol, wire = connected()
        protocol.__class__ = Refusing
        if lean:
            assert respond(protocol, TAKEN["basic"], parse_upgrade(TAKEN["basic"])[1])
        else:
            protocol.dataReceived(TAKEN["basic"])
        wires.append(wire.value())
    assert wires[0].startswith(b"HTTP/1.1 403")
    assert wires[1] == wires[0]


@pytest.mark.parametrize("name", REJECTED)
def test_a_header_block_autobahn_rejects_is_refused_with_400(name):
    data = REJECTED[name]
    protocol, wire = connected()
    before = dict(vars(protocol))
    lines = data[: data.index(b"\r\n\r\n")].split(b"\r\n")
    assert respond(protocol, data, lines) is False
    assert vars(protocol) == before
    protocol.dataReceived(data)
    assert wire.value().startswith(b"HTTP/1.1 400 ")
    assert not hasattr(protocol, "request_seen")
