"""Unmask and check incoming WebSocket frames with C functions under Daphne.

Upstream: autobahn 26.11.1 (``autobahn/websocket/protocol.py``:
``WebSocketProtocol.processData`` and ``sendMessage``, whose common case is
repeated here, keeping its ``trafficStats`` counters), on Daphne 4.2.3's
``WebSocketProtocol``; websockets 17.4's C ``apply_mask``.
Touches: ``autobahn.websocket.protocol.create_xor_masker`` and
``Utf8Validator`` (module globals, looked up at call time), Daphne's
``WebSocketProtocol.processData``/``sendMessage``, and the protocol
attributes they read (``data``, ``current_frame``, ``inside_message``,
``_perMessageCompress``, ``send_queue``, ``_cancelAutoPingTimeoutCall``...).

Autobahn unmasks every client frame and checks every text message's UTF-8
through cffi wrappers that allocate native buffers per frame, an order of
magnitude slower for signaling-sized frames than websockets' C
``apply_mask`` and CPython's own UTF-8 decoder. Same results: the same bytes come out, and
invalid UTF-8 still fails the connection (Autobahn's 1007) where it did.

Most frames are one short, complete text message each way. For those,
Autobahn's general frame machinery (the receive side: eleven method calls
through its frame and message hooks per frame; the send side: three calls
with their checks and a header built bit by bit) is replaced by a direct
path on Daphne's protocol class: read or write the frame in one go and
keep Autobahn's counters as it would. Anything else (fragments, control
frames, binary frames, a frame not yet complete, oversized, unmasked,
invalid UTF-8, compression, debugging options, a connection not open)
takes Autobahn's own path, so every refusal still looks as Autobahn makes
it.
"""

from __future__ import annotations

import codecs
import sys

try:
    from websockets.speedups import apply_mask
except ImportError:  # built without its C extension: the same, in Python
    from websockets.utils import apply_mask

_PATCHED = "_signaling_frames"

UPSTREAM = {"autobahn": "26.11.1", "daphne": "4.2.3", "websockets": "17.4"}
TOUCHES = (
    "autobahn.websocket.protocol.create_xor_masker",
    "autobahn.websocket.protocol.Utf8Validator",
    "daphne.ws_protocol.WebSocketProtocol.processData",
    "daphne.ws_protocol.WebSocketProtocol.sendMessage",
    "autobahn.websocket.protocol.WebSocketProtocol._perMessageCompress",
    "autobahn.websocket.protocol.WebSocketProtocol._cancelAutoPingTimeoutCall",
)


class FrameUnmasker:
    """Autobahn's masker interface (pointer, reset, process) for one frame,
    whose payload may arrive over several reads."""

    __slots__ = ("mask", "position")

    def __init__(self, mask: bytes, length: int | None = None) -> None:
        # Autobahn's create_xor_masker signature; the length is not needed.
        self.mask = bytes(mask)
        self.position = 0

    def pointer(self) -> int:
        return self.position

    def reset(self) -> None:
        self.position = 0

    def process(self, data: bytes) -> bytes:
        offset = self.position & 3
        self.position += len(data)
        mask = self.mask
        if offset:
            # This piece starts mid-way through the 4-byte mask cycle.
            mask = mask[offset:] + mask[:offset]
        return apply_mask(data, mask)


class Utf8Checker:
    """Autobahn's incremental Utf8Validator interface over CPython's decoder.

    ``validate`` returns (valid, ends on a code point boundary, octets of
    this piece checked, octets of the message checked), as Autobahn's does.
    """

    __slots__ = ("pending", "checked")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # Bytes of a code point cut by the end of the previous piece.
        self.pending = b""
        self.checked = 0

    def validate(self, piece: bytes) -> tuple[bool, bool, int, int]:
        held = len(self.pending)
        data = self.pending + piece if held else piece
        try:
            # final=False: an incomplete sequence at the end is left
            # unconsumed (it may be completed by the next piece), while an
            # invalid one raises.
            _, consumed = codecs.utf_8_decode(data, "strict", False)
        except UnicodeDecodeError as error:
            at = max(error.start - held, 0)
            return False, False, at, self.checked + at
        self.pending = bytes(data[consumed:])
        self.checked += len(piece)
        return True, not self.pending, len(piece), self.checked


# The first byte of a complete text message: FIN, no RSV bits, opcode 1.
_TEXT_FIN = 0x81
_BINARY_FIN = 0x82
# A 16-bit extended length: the direct paths stop there (our messages are
# far smaller; the largest allowed ones take Autobahn's path).
_LENGTH_16 = 126
_MAX_LENGTH_16 = 0xFFFF


def apply() -> None:
    protocol = sys.modules.get("autobahn.websocket.protocol")
    if protocol is None or getattr(protocol, _PATCHED, False):
        return
    # Autobahn's protocol module looks both names up at call time.
    if not hasattr(protocol, "create_xor_masker") or not hasattr(protocol, "Utf8Validator"):
        return
    protocol.create_xor_masker = FrameUnmasker
    protocol.Utf8Validator = Utf8Checker
    setattr(protocol, _PATCHED, True)
    daphne_protocol = sys.modules.get("daphne.ws_protocol")
    if daphne_protocol is not None:
        _add_direct_paths(daphne_protocol.WebSocketProtocol, protocol.WebSocketProtocol.STATE_OPEN)


def _add_direct_paths(protocol_class, state_open: int) -> None:
    general_process_data = protocol_class.processData
    general_send_message = protocol_class.sendMessage

    def processData(self) -> bool:
        data = self.data
        if (
            len(data) >= 6
            and data[0] == _TEXT_FIN
            and self.current_frame is None
            and not self.inside_message
            and self.state == state_open
            and not self.failedByMe
            and self._perMessageCompress is None
            and not self.logFrames
            and not self.trackedTimings
        ):
            # The mask bit set leaves a 7-bit length; unset, a value above
            # 127 that no branch below takes.
            length = data[1] ^ 0x80
            if length < _LENGTH_16:
                start = 6
            elif length == _LENGTH_16 and len(data) >= 8:
                length = int.from_bytes(data[2:4], "big")
                # Below 126 is a non-minimal encoding Autobahn refuses.
                start = 8 if length >= _LENGTH_16 else 0
            else:
                start = 0
            end = start + length
            if start and len(data) >= end and not (
                0 < self.maxFramePayloadSize < length
                or 0 < self.maxMessagePayloadSize < length
            ):
                payload = apply_mask(data[start:end], data[start - 4:start])
                # Daphne's onMessage decodes the text again; checking it
                # here first (cheap, in C) keeps invalid
                # UTF-8 on Autobahn's path, which fails the connection with
                # 1007, instead of an exception inside Daphne.
                if self.utf8validateIncoming and not _is_utf8(payload):
                    return general_process_data(self)
                self.data = data[end:]
                stats = self.trafficStats
                stats.incomingOctetsWebSocketLevel += length
                stats.incomingOctetsAppLevel += length
                stats.incomingWebSocketFrames += 1
                stats.incomingWebSocketMessages += 1
                if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                    self._cancelAutoPingTimeoutCall()
                self.onMessage(payload, False)
                return len(self.data) > 0
        return general_process_data(self)

    def sendMessage(self, payload, isBinary=False, fragmentSize=None, sync=False,
                    doNotCompress=False):
        length = len(payload)
        if (
            type(payload) is bytes
            and length <= _MAX_LENGTH_16
            and fragmentSize is None
            and not sync
            and self.state == state_open
            and self._perMessageCompress is None
            and not self.send_queue
            and not (0 < self.autoFragmentSize < length)
            and not (0 < self.maxMessagePayloadSize < length)
            and not self.maskServerFrames
            and not self.trackedTimings
            and not self.logFrames
            and not self.logOctets
            and self.factory.isServer
        ):
            first = _BINARY_FIN if isBinary is True else _TEXT_FIN
            if length < _LENGTH_16:
                frame = bytes((first, length)) + payload
            else:
                frame = bytes((first, _LENGTH_16)) + length.to_bytes(2, "big") + payload
            stats = self.trafficStats
            stats.outgoingWebSocketMessages += 1
            stats.outgoingOctetsAppLevel += length
            stats.outgoingOctetsWebSocketLevel += length
            stats.outgoingWebSocketFrames += 1
            stats.outgoingOctetsWireLevel += len(frame)
            self.transport.write(frame)
            return
        general_send_message(self, payload, isBinary, fragmentSize, sync, doNotCompress)

    protocol_class.processData = processData
    protocol_class.sendMessage = sendMessage


def _is_utf8(payload: bytes) -> bool:
    try:
        codecs.utf_8_decode(payload, "strict", True)
    except UnicodeDecodeError:
        return False
    return True
