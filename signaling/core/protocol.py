"""The signaling wire protocol: decoding, validation and reply building.

Pure code: no Django, no ``await``, no I/O. Every frame is a JSON object in
the original Node.js server's envelope ``{type, username, target, data}``.

Client to server
----------------
``SignIn {username, data?}``
    Sign in as ``username``; ``data`` is an optional password string (the
    Android app sends none).
``StartConnection {target}``
    Ask ``target`` for a connection; relayed without ``data``.
``Offer {target, data}`` / ``Answer {target, data}`` /
``IceCandidates {target, data}``
    Relayed to ``target``. ``data`` is opaque (raw SDP string, the app's
    JSON-string candidate, a browser's object, an array, or null) and reaches
    the target as the same JSON value.

``DeclineConnection {target, data?}``
    An extension: refuse a StartConnection from ``target``, or withdraw
    one's own request to ``target``; ``data`` may carry a reason string.
    Relayed like the others.
``GetIceServers {}``
    An extension: ask for ICE servers (fresh TURN credentials) now; answered
    with ``IceServers``. Needs a signed-in session.

A ``username`` field on a relay frame is optional; when present it must equal
the signed-in name (the server stamps the sender, nobody speaks for others).

Server to client
----------------
Relayed frames
    ``{type, username: <sender>, target: <recipient>, data}``.
``SignedIn``
    ``{type, username: "server", target: <you>, data: {"guest": bool,
    "iceServers": [...]}}`` acknowledges a sign-in; ``iceServers`` is the
    browser's ``RTCIceServer`` list (STUN, TURN with this session's
    credentials), possibly empty.
``IceServers``
    ``{type, username: "server", target: <you>, data: {"iceServers": [...],
    "expiresAt": <unix time or null>}}`` answers ``GetIceServers``, and is
    sent unasked before the TURN credentials handed out earlier expire.
``PeerLeft``
    ``{type, username: <peer>, target: <you>, data: {"reason": ...}}``: a
    user you exchanged signaling with in this session has gone.
``SessionReplaced``
    ``{type, username: "server", target: <you>, data: <message>}`` sent right
    before the server closes a session another sign-in took over
    (close code 4001).
``Reconnect``
    ``{type, username: "server", target: <you>, data: {"reason":
    "server_stopping"}}`` sent when this instance stops; the socket closes
    with 4003 and the client should connect again (any instance).
``Error``
    ``{type: "Error", username: "server", target: <you>, data: <message>,
    code: <slug>}``: the original server's shape plus a stable ``code``.
"""

from __future__ import annotations

import enum
import json
import json.encoder
import json.scanner
import unicodedata
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

# SDP is a few KB and an ICE candidate a few hundred bytes; 64 KiB leaves room
# for generous SDP (many media sections) while bounding per-frame work.
MAX_FRAME_BYTES = 64 * 1024
# The original server had no limit; 64 fits every name seen in the app.
MAX_USERNAME_LENGTH = 64
# Channels accepts group names of ASCII letters, digits, "-_." under 100
# characters, so user names are never used in group names as they are.
GROUP_PREFIX = "signaling.user."

SERVER_NAME = "server"


class MessageType(str, enum.Enum):
    SIGN_IN = "SignIn"
    START_CONNECTION = "StartConnection"
    OFFER = "Offer"
    ANSWER = "Answer"
    ICE_CANDIDATES = "IceCandidates"
    # An extension: the addressee of a StartConnection says no.
    DECLINE_CONNECTION = "DeclineConnection"
    # An extension: ask for ICE servers (fresh TURN credentials).
    GET_ICE_SERVERS = "GetIceServers"
    # Server to client only.
    SIGNED_IN = "SignedIn"
    ICE_SERVERS = "IceServers"
    PEER_LEFT = "PeerLeft"
    SESSION_REPLACED = "SessionReplaced"
    RECONNECT = "Reconnect"
    ERROR = "Error"


RELAY_TYPES = frozenset(
    {
        MessageType.START_CONNECTION,
        MessageType.OFFER,
        MessageType.ANSWER,
        MessageType.ICE_CANDIDATES,
        MessageType.DECLINE_CONNECTION,
    }
)
CLIENT_TYPES = RELAY_TYPES | {MessageType.SIGN_IN, MessageType.GET_ICE_SERVERS}


class ErrorCode(str, enum.Enum):
    """Stable machine-readable slugs carried in the ``code`` of Error frames."""

    INVALID_JSON = "invalid_json"
    BINARY_FRAME = "binary_frame"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    FRAME_TOO_LARGE = "frame_too_large"
    NOT_SIGNED_IN = "not_signed_in"
    INVALID_USERNAME = "invalid_username"
    USERNAME_TAKEN = "username_taken"
    WRONG_CREDENTIALS = "wrong_credentials"
    GUESTS_DISABLED = "guests_disabled"
    ALREADY_SIGNED_IN = "already_signed_in"
    USERNAME_MISMATCH = "username_mismatch"
    TARGET_NOT_FOUND = "target_not_found"
    RELAY_FAILED = "relay_failed"
    SERVICE_UNAVAILABLE = "service_unavailable"
    TARGET_BUSY = "target_busy"
    RATE_LIMITED = "rate_limited"
    SIGN_IN_TIMEOUT = "sign_in_timeout"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SERVER_FULL = "server_full"
    DISCONNECTED_BY_ADMIN = "disconnected_by_admin"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (4000-4999 are private use)."""

    NORMAL = 1000
    SESSION_REPLACED = 4001
    DISCONNECTED_BY_ADMIN = 4002
    # The instance is stopping: connect again (to any instance). 1012
    # "Service Restart" would say the same, but Autobahn (under Daphne) only
    # sends 1000 or 3000-4999.
    SERVER_STOPPING = 4003
    SIGN_IN_TIMEOUT = 4004
    # The server could not re-establish this session after its message
    # broker lost it (after a Reconnect frame): connect again.
    SESSION_LOST = 4005
    RATE_LIMITED = 4008
    TOO_MANY_CONNECTIONS = 4009


class ProtocolError(Exception):
    """Raised when a client frame is invalid; answered with an Error frame."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Human texts. ``target_not_found`` is the original server's exact wording.
TARGET_NOT_FOUND_MESSAGE = "Target user not found"


@dataclass(frozen=True, slots=True)
class SignIn:
    username: str
    password: str | None


@dataclass(frozen=True, slots=True)
class Relay:
    type: MessageType
    target: str
    data: Any
    # The username the client claimed, if it sent one; checked by the
    # consumer against the signed-in name.
    claimed_username: str | None


@dataclass(frozen=True, slots=True)
class GetIceServers:
    pass


Message = SignIn | Relay | GetIceServers


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them unless told not to.
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with an option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# JSONDecoder.decode is Python around this C scanner (two whitespace regex
# matches); called directly it costs about half as much for an ICE frame.
# Anything but a document that starts at once and ends at the end
# goes through decode, so errors and whitespace are handled as it does.
_SCAN = json.scanner.make_scanner(_DECODER)
_WHITESPACE = " \t\n\r"


def decode_json(text: str) -> Any:
    """Decode a frame's JSON exactly as ``_DECODER.decode`` would.

    Raises ValueError (malformed JSON, NaN, integers beyond Python's digit
    limit) or RecursionError (absurdly deep nesting).
    """
    if text and text[0] not in _WHITESPACE:
        try:
            content, end = _SCAN(text, 0)
        except StopIteration:
            return _DECODER.decode(text)
        if end == len(text):
            return content
    return _DECODER.decode(text)


def decode_json_at(text: str, start: int) -> tuple[Any, int]:
    """Decode the JSON value that begins exactly at ``start`` in ``text``.

    Returns the value and the index just past it. Raises ValueError when no
    valid JSON value begins there (whitespace included), RecursionError for
    absurdly deep nesting.
    """
    try:
        return _SCAN(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at {start}") from None


def decode_frame(text: str | None, binary: bytes | None = None) -> Message:
    """Decode one WebSocket frame into a validated message.

    Raises ProtocolError for anything that is not a valid client frame.
    """
    if text is None:
        raise ProtocolError(
            ErrorCode.BINARY_FRAME, "Binary frames are not supported; send JSON text"
        )
    if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode("utf-8", "replace")) > (
        MAX_FRAME_BYTES
    ):
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"Frame is larger than {MAX_FRAME_BYTES} bytes",
        )
    try:
        content = decode_json(text)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON, NaN and integers beyond Python's
        # digit limit; RecursionError covers absurdly deep nesting.
        raise ProtocolError(ErrorCode.INVALID_JSON, "Frame is not valid JSON") from None
    return decode_message(content)


def decode_message(content: Any) -> Message:
    """Validate decoded JSON content as a client message."""
    if not isinstance(content, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, "Frame must be a JSON object")
    if "type" not in content or content["type"] is None:
        raise ProtocolError(ErrorCode.MISSING_TYPE, "Frame has no type")
    raw_type = content["type"]
    if not isinstance(raw_type, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "type must be a string")
    try:
        message_type = MessageType(raw_type)
    except ValueError:
        message_type = None
    if message_type not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"Unknown message type {_quote(raw_type)}"
        )
    if message_type is MessageType.SIGN_IN:
        return _decode_sign_in(content)
    if message_type is MessageType.GET_ICE_SERVERS:
        # No fields; any sent are ignored like unknown fields elsewhere.
        return GetIceServers()
    return _decode_relay(message_type, content)


def _decode_sign_in(content: dict[str, Any]) -> SignIn:
    username = content.get("username")
    if not isinstance(username, str):
        raise ProtocolError(ErrorCode.INVALID_USERNAME, "username must be a string")
    check_username(username)
    password = content.get("data")
    if password is not None and not isinstance(password, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "data (the password) must be a string or null"
        )
    return SignIn(username=username, password=password)


def _decode_relay(message_type: MessageType, content: dict[str, Any]) -> Relay:
    target = content.get("target")
    if target is None:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "target is required")
    if not isinstance(target, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "target must be a string")
    claimed = content.get("username")
    if claimed is not None and not isinstance(claimed, str):
        raise ProtocolError(
            ErrorCode.USERNAME_MISMATCH, "username must be your signed-in name"
        )
    data = content.get("data")
    if isinstance(data, (bool, int, float)):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "data must be a string, an object, an array or null"
        )
    if message_type is MessageType.START_CONNECTION:
        data = None
    return Relay(type=message_type, target=target, data=data, claimed_username=claimed)


def check_username(username: str) -> None:
    """Raise ProtocolError unless ``username`` is an acceptable name."""
    if not 1 <= len(username) <= MAX_USERNAME_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_USERNAME,
            f"username must be 1 to {MAX_USERNAME_LENGTH} characters",
        )
    if username != username.strip():
        raise ProtocolError(
            ErrorCode.INVALID_USERNAME,
            "username must not start or end with whitespace",
        )
    # Control (Cc), format (Cf), unassigned and surrogate code points can
    # hide a name's real content in logs and the admin, or fail to encode.
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cn", "Cs"} for char in username):
        raise ProtocolError(
            ErrorCode.INVALID_USERNAME, "username must not contain control characters"
        )
    if reserved_name(username):
        raise ProtocolError(
            ErrorCode.INVALID_USERNAME,
            f"usernames beginning {RESERVED_PREFIX!r} are reserved for PeerJS peers",
        )


# Presence names beginning with this belong to PeerJS peers (core/peerjs.py):
# reserved, so app usernames and PeerJS ids never meet.
RESERVED_PREFIX = "peerjs:"


def reserved_name(username: str) -> bool:
    return username.startswith(RESERVED_PREFIX)


def group_name(username: str) -> str:
    """Return the channel-layer group for ``username``.

    Channels allows only ASCII letters, digits and ``-_.`` in group names, so
    the name is hashed rather than interpolated.
    """
    return GROUP_PREFIX + sha256(username.encode("utf-8")).hexdigest()


def encode(content: dict[str, Any]) -> str:
    # Compact like JavaScript's JSON.stringify, which the original used.
    # ASCII-only output always encodes to UTF-8, even when a client sent a
    # lone surrogate escape inside opaque data.
    if _ENCODE_C is None:
        return _ENCODER.encode(content)
    return "".join(_ENCODE_C(content, 0))


# Built once, like _DECODER: json.dumps with an option builds a new
# encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# And JSONEncoder.encode builds a C encoder on every call: this one is built
# once with _ENCODER's settings, about half the cost for a relayed ICE
# frame. No circular-reference check: frames are dicts built here.
_ENCODE_C = (
    json.encoder.c_make_encoder(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
    if json.encoder.c_make_encoder is not None
    else None
)


def relay_frame(relay: Relay, *, sender: str) -> str:
    """Build the frame that carries ``relay`` to its target."""
    content: dict[str, Any] = {
        "type": relay.type.value,
        "username": sender,
        "target": relay.target,
    }
    if relay.type is not MessageType.START_CONNECTION:
        content["data"] = relay.data
    return encode(content)


def error_frame(code: ErrorCode, message: str, *, target: str | None) -> str:
    return encode(
        {
            "type": MessageType.ERROR.value,
            "username": SERVER_NAME,
            "target": target,
            "data": message,
            "code": code.value,
        }
    )


def signed_in_frame(
    username: str, *, guest: bool, ice_servers: list[dict[str, Any]]
) -> str:
    return encode(
        {
            "type": MessageType.SIGNED_IN.value,
            "username": SERVER_NAME,
            "target": username,
            "data": {"guest": guest, "iceServers": ice_servers},
        }
    )


def ice_servers_frame(
    username: str, *, ice_servers: list[dict[str, Any]], expires_at: int | None
) -> str:
    return encode(
        {
            "type": MessageType.ICE_SERVERS.value,
            "username": SERVER_NAME,
            "target": username,
            "data": {"iceServers": ice_servers, "expiresAt": expires_at},
        }
    )


def peer_left_frame(peer: str, *, target: str, reason: str) -> str:
    return encode(
        {
            "type": MessageType.PEER_LEFT.value,
            "username": peer,
            "target": target,
            "data": {"reason": reason},
        }
    )


def session_replaced_frame(username: str) -> str:
    return encode(
        {
            "type": MessageType.SESSION_REPLACED.value,
            "username": SERVER_NAME,
            "target": username,
            "data": "Signed in from another connection",
        }
    )


def reconnect_frame(username: str | None, reason: str = "server_stopping") -> str:
    return encode(
        {
            "type": MessageType.RECONNECT.value,
            "username": SERVER_NAME,
            "target": username,
            "data": {"reason": reason},
        }
    )


def _quote(value: str, limit: int = 40) -> str:
    shown = value if len(value) <= limit else value[:limit] + "…"
    return json.dumps(shown)
