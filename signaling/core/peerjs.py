"""The PeerJS server protocol: decoding, validation and reply building.

Pure code: no Django, no ``await``, no I/O. Speaks what the ``peerjs``
client (1.x) expects of peers/peerjs-server 1.0.x: every frame is a JSON
object ``{type, src?, dst?, payload?}`` with UPPERCASE types.

Handshake (query string of ``{path}peerjs``)
--------------------------------------------
``key``, ``id``, ``token`` are required, ``version`` is informational.
``check_handshake`` validates them and raises PeerJSRefusal, answered with
``ERROR`` (or ``ID-TAKEN``) before the socket closes.

Client to server
----------------
``HEARTBEAT``
    Every 5 s from the client: refreshes liveness, no answer.
``OFFER`` / ``ANSWER`` / ``CANDIDATE`` ``{dst, payload}``
    Relayed to ``dst``; kept for a while when ``dst`` is not connected.
``LEAVE`` / ``EXPIRE`` ``{dst, payload?}``
    Relayed to ``dst`` when it is connected, never kept.

Server to client
----------------
``OPEN``
    The id is this socket's (also after a same-token reconnect, where
    peerjs-server sends nothing: the client sets ``peer.open`` on it).
``ERROR {payload: {msg}}``
    A refused handshake (missing parameter, wrong key, server full); the
    socket closes after it. The client treats it as fatal.
``ID-TAKEN {payload: {msg}}``
    The id is held under another token (or is an account's name and the
    token is not its password); the socket closes after it.
Relayed frames ``{type, src, dst, payload}``
    ``src`` is always the sender's id as the server knows it; nothing else
    the sender put in the frame goes through.
``EXPIRE {src: <dst>, dst: <you>}``
    What you sent to ``src`` could not be delivered: the client reports
    ``peer-unavailable``.

Where peerjs-server is silent
-----------------------------
Any ``ERROR`` frame makes the client destroy its Peer, so a mistake in one
frame must not be answered with one. Frames that are not JSON objects, that
have no string ``type``, or whose type is not one above are ignored and the
socket stays open (peerjs-server ignores unknown types and breaks the socket
on bad JSON). A relay too large to carry, or to an id nobody can hold, is
answered with ``EXPIRE`` from its ``dst``: the sender learns it was not
delivered, which it reports as ``peer-unavailable``, not a fatal error.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from signaling.core.protocol import decode_json, decode_json_at, encode

# A client's OFFER carries SDP (a few KB) and the application's
# ``metadata`` (any JSON it chose); 128 KiB leaves room for both while
# bounding per-frame work (Daphne itself drops anything over 1 MiB).
MAX_FRAME_BYTES = 128 * 1024
# The id pattern of peerjs-server (``src/api/v1/public``, the client's
# ``util.validateId``): words of letters and digits joined by one space,
# underscore or hyphen.
ID_PATTERN = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")
# Presence stores claims under ``CLAIM_PREFIX + id`` in the namespace the app
# protocol's usernames use (live-session rows hold 64 characters): 57 is far
# above the 36 of the UUIDs the client and ``/id`` make.
CLAIM_PREFIX = "peerjs:"
MAX_ID_LENGTH = 64 - len(CLAIM_PREFIX)
# Tokens are random strings the client makes (or an account password).
MAX_TOKEN_LENGTH = 256

ID_TAKEN_MESSAGE = "ID is taken"


class MessageType(str, enum.Enum):
    OPEN = "OPEN"
    ERROR = "ERROR"
    ID_TAKEN = "ID-TAKEN"
    HEARTBEAT = "HEARTBEAT"
    OFFER = "OFFER"
    ANSWER = "ANSWER"
    CANDIDATE = "CANDIDATE"
    LEAVE = "LEAVE"
    EXPIRE = "EXPIRE"


# Client types by their text: a dict look-up, where calling the enum costs
# several Python calls per frame.
_CLIENT_TYPES = {
    message_type.value: message_type
    for message_type in MessageType
    if message_type not in {MessageType.OPEN, MessageType.ERROR, MessageType.ID_TAKEN}
}
RELAY_TYPES = frozenset(
    {
        MessageType.OFFER,
        MessageType.ANSWER,
        MessageType.CANDIDATE,
        MessageType.LEAVE,
        MessageType.EXPIRE,
    }
)
# Kept for an id that is not connected yet; LEAVE and EXPIRE are not (as
# peerjs-server: they concern a peer that is not there).
QUEUED_TYPES = frozenset({MessageType.OFFER, MessageType.ANSWER, MessageType.CANDIDATE})


class Ignored(enum.Enum):
    """Why a client frame was dropped without an answer (for metrics)."""

    BINARY = "binary"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    NO_DESTINATION = "no_destination"


class PeerJSRefusal(Exception):
    """Raised when a handshake is refused; answered with ``frame``."""

    def __init__(self, frame: str, reason: str) -> None:
        super().__init__(reason)
        self.frame = frame
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Handshake:
    id: str
    token: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


HEARTBEAT = Heartbeat()
# The peerjs client's heartbeat (``JSON.stringify({type: "HEARTBEAT"})``)
# byte for byte: every idle client sends it every 5 s, so it is recognised
# without parsing. Any other spelling is parsed as usual.
HEARTBEAT_TEXT = '{"type":"HEARTBEAT"}'


@dataclass(frozen=True, slots=True)
class Relay:
    type: MessageType
    dst: str
    payload: Any
    # ``payload`` as the client wrote it, when the frame came in the peerjs
    # client's own layout: valid JSON (it decoded to ``payload``), carried
    # as it is rather than encoded again.
    payload_json: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """A relay that cannot be carried: its sender gets ``EXPIRE``."""

    dst: str
    reason: str


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: Ignored


Message = Heartbeat | Relay | Undeliverable | Dropped


def valid_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and ID_PATTERN.fullmatch(value) is not None
    )


def claim_name(peer_id: str) -> str:
    """The presence name of a PeerJS id (apart from app usernames)."""
    return CLAIM_PREFIX + peer_id


def check_handshake(query: dict[str, str], *, key: str) -> Handshake:
    """Validate the handshake's query; raise PeerJSRefusal to refuse it.

    The order and texts follow peerjs-server (``webSocketServer/index.ts``).
    """
    peer_id = query.get("id")
    token = query.get("token")
    if not peer_id or not token or not query.get("key"):
        raise PeerJSRefusal(
            error_frame("No id, token, or key supplied to websocket server"),
            "missing_parameters",
        )
    if query["key"] != key:
        raise PeerJSRefusal(error_frame("Invalid key provided"), "invalid_key")
    if not valid_id(peer_id):
        # peerjs-server accepts any id here; its HTTP API and the client
        # check the pattern. An id outside it could not be called anyway.
        raise PeerJSRefusal(error_frame("Invalid id provided"), "invalid_id")
    if len(token) > MAX_TOKEN_LENGTH:
        raise PeerJSRefusal(error_frame("Invalid token provided"), "invalid_token")
    return Handshake(id=peer_id, token=token)


def decode_frame(text: str | None, binary: bytes | None = None) -> Message:
    """Decode one client frame. Never raises: see the module docstring."""
    if text is None:
        return Dropped(Ignored.BINARY)
    if text == HEARTBEAT_TEXT:
        return HEARTBEAT
    oversized = len(text) > MAX_FRAME_BYTES // 4 and (
        len(text.encode("utf-8", "replace")) > MAX_FRAME_BYTES
    )
    if not oversized:
        relay = _decode_client_layout(text)
        if relay is not None:
            return relay
    try:
        # Daphne caps a message at 1 MiB, so even an oversized one is
        # decoded at a bounded cost, to tell its sender it went nowhere.
        content = decode_json(text)
    except (ValueError, RecursionError):
        return Dropped(Ignored.INVALID_JSON)
    if not isinstance(content, dict):
        return Dropped(Ignored.NOT_AN_OBJECT)
    raw_type = content.get("type")
    message_type = _CLIENT_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if message_type is MessageType.HEARTBEAT:
        return HEARTBEAT
    if message_type not in RELAY_TYPES:
        return Dropped(Ignored.UNKNOWN_TYPE)
    dst = content.get("dst")
    if not isinstance(dst, str) or not dst:
        return Dropped(Ignored.NO_DESTINATION)
    if oversized:
        return Undeliverable(dst=dst, reason="frame_too_large")
    if not valid_id(dst):
        return Undeliverable(dst=dst, reason="invalid_id")
    return Relay(type=message_type, dst=dst, payload=content.get("payload"))


def _decode_client_layout(text: str) -> Relay | None:
    """Decode a relay in the peerjs client's layout, or return None.

    The client sends ``JSON.stringify({type, payload, dst})``: exactly
    ``{"type":"T","payload":P,"dst":"D"}`` with no space and no escape in
    ``T`` and ``D``. For such a frame the envelope is read by position and
    only ``P`` is parsed (in C, from where it begins), so its text is known
    to be valid JSON and can be carried as it is. Anything else (other keys,
    another order, spaces, escapes, an invalid payload) returns None and is
    decoded in full; so a frame decodes to the same message either way.
    Only ASCII text qualifies, so relayed frames stay ASCII as ``encode``
    makes them.
    """
    if not text.startswith('{"type":"') or not text.isascii():
        return None
    type_end = text.find('"', 9)
    if type_end < 0:
        return None
    message_type = _CLIENT_TYPES.get(text[9:type_end])
    if message_type not in RELAY_TYPES or not text.startswith(
        ',"payload":', type_end + 1
    ):
        return None
    start = type_end + 12
    try:
        payload, end = decode_json_at(text, start)
    except (ValueError, RecursionError):
        return None
    if not text.startswith(',"dst":"', end) or not text.endswith('"}'):
        return None
    dst = text[end + 8 : -2]
    if not valid_id(dst):
        # Escapes, quotes, an id nobody can hold: the full decode answers.
        return None
    return Relay(
        type=message_type, dst=dst, payload=payload, payload_json=text[start:end]
    )


def relay_frame(relay: Relay, *, src: str) -> str:
    """The frame carrying ``relay``: only ``type, src, dst, payload``.

    Built by the server around the payload; ``src`` is always the one
    given, whatever the client sent. The result is what ``encode`` makes of
    ``{type, src, dst, payload?}``, but for a payload carried as the client
    wrote it (``payload_json``: the same JSON value, maybe spelled
    otherwise).
    """
    head = (
        '{"type":"'
        + relay.type.value
        + '","src":'
        + encode_basestring_ascii(src)
        + ',"dst":'
        + encode_basestring_ascii(relay.dst)
    )
    if relay.payload is None:
        return head + "}"
    payload = relay.payload_json
    if payload is None:
        payload = encode(relay.payload)
    return head + ',"payload":' + payload + "}"


def open_frame() -> str:
    return encode({"type": MessageType.OPEN.value})


def error_frame(message: str) -> str:
    return encode({"type": MessageType.ERROR.value, "payload": {"msg": message}})


def id_taken_frame(message: str = ID_TAKEN_MESSAGE) -> str:
    return encode({"type": MessageType.ID_TAKEN.value, "payload": {"msg": message}})


def expire_frame(*, src: str, dst: str) -> str:
    """Tell ``dst`` that what it sent to ``src`` was not delivered."""
    return encode({"type": MessageType.EXPIRE.value, "src": src, "dst": dst})
