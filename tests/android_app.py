"""An aiortc double of the shipped Android app, following its source.

``/work/shared/reference/android-app.md`` (read from the app's Kotlin source)
is what it follows:

- Signaling: ``SignIn`` with a name and no ``data``; ``StartConnection`` from
  the one who asks; the side that *accepts* creates the data channel
  ``dataChannelLabel`` (default options) and sends the ``Offer``, made with
  ``OfferToReceiveVideo`` so it carries a video m-line; SDP travels raw,
  each candidate as the JSON string Gson makes of ``org.webrtc.IceCandidate``
  (the line under ``sdp``). ``tests.peers.Peer`` does all of this.
- Data channel: every message is cut into chunks of at most 16,000 payload
  bytes, each one message ``HDR|TYPE|messageId|chunkIndex|totalChunks|
  flags\\n`` + payload, sent as a *string* message even for file bytes, all
  at once without watching the channel's buffer.
- Receiving: the bytes are read whatever the binary flag; the header must
  split on ``|`` into exactly 6 parts; chunks are grouped by messageId, a
  repeated index is ignored, and a message completes when all indices
  arrived.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import WEBRTC_STRING, WEBRTC_STRING_EMPTY

from tests.peers import Peer, send_raw_text_message

APP_CHANNEL_LABEL = "dataChannelLabel"
CHUNK_BYTES = 16_000  # the app's payload per chunk
TYPES = ("TEXT", "IMAGE", "VIDEO", "FILE")


class FramingError(ValueError):
    """Raised when a message is not a chunk in the app's framing."""


@dataclass(frozen=True)
class Chunk:
    """One data-channel message in the app's framing."""

    type: str
    message_id: str
    index: int
    total: int
    flags: str
    payload: bytes

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise FramingError(f"unknown type {self.type!r}")
        if not 0 <= self.index < self.total:
            raise FramingError(f"index {self.index} of {self.total}")

    def serialize(self) -> bytes:
        header = f"HDR|{self.type}|{self.message_id}|{self.index}|{self.total}|{self.flags}\n"
        return header.encode() + self.payload

    @classmethod
    def parse(cls, data: bytes) -> Chunk:
        """Read a chunk as the app does: a header line of exactly 6 fields."""
        header, newline, payload = data.partition(b"\n")
        if not newline:
            raise FramingError("no header line")
        fields = header.decode("utf-8", errors="replace").split("|")
        if len(fields) != 6 or fields[0] != "HDR":
            raise FramingError(f"header of {len(fields)} fields")
        _, kind, message_id, index, total, flags = fields
        try:
            return cls(kind, message_id, int(index), int(total), flags, payload)
        except ValueError as error:
            raise FramingError(str(error)) from None


def app_flags(*, mime: str | None = None, name: str | None = None) -> str:
    """The flags field: ``0``, or ``mime=…;name=…``, escaped as the app does."""

    def clean(value: str) -> str:
        return value.replace("|", "_").replace("\n", " ")

    parts = []
    if mime:
        parts.append(f"mime={clean(mime)}")
    if name:
        parts.append(f"name={clean(name)}")
    return ";".join(parts) or "0"


def parse_flags(flags: str) -> dict[str, str]:
    """``{"mime": …, "name": …}`` from a flags field (a name may hold ";")."""
    result = {"mime": "", "name": ""}
    head = "" if flags == "0" else flags
    if head.startswith("name="):
        result["name"], head = head[5:], ""
    elif ";name=" in head:
        head, result["name"] = head.split(";name=", 1)
    if head.startswith("mime="):
        result["mime"] = head[5:]
    return result


def frame_message(kind: str, payload: bytes, *, flags: str = "0") -> list[Chunk]:
    """Cut one message into chunks (an empty one is one empty chunk)."""
    message_id = str(uuid.uuid4())
    total = max(1, -(-len(payload) // CHUNK_BYTES))
    return [
        Chunk(
            kind,
            message_id,
            index,
            total,
            flags,
            payload[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES],
        )
        for index in range(total)
    ]


@dataclass
class AppMessage:
    """A whole message the app would show (TEXT) or save."""

    type: str
    message_id: str
    flags: str
    payload: bytes
    # Whether every chunk came as a binary message, and when the first and
    # the last arrived (time.perf_counter()).
    binary: bool
    first_at: float
    completed_at: float

    @property
    def name(self) -> str:
        return parse_flags(self.flags)["name"]

    @property
    def mime(self) -> str:
        return parse_flags(self.flags)["mime"]

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


@dataclass
class Reassembler:
    """The app's receiving rules."""

    _parts: dict[str, dict[int, bytes]] = field(default_factory=dict)
    _binary: dict[str, bool] = field(default_factory=dict)
    _first_at: dict[str, float] = field(default_factory=dict)
    ignored: int = 0

    def receive(self, data: bytes, *, binary: bool) -> AppMessage | None:
        """Take one message's bytes; return the message it completes, if any."""
        try:
            chunk = Chunk.parse(data)
        except FramingError:
            # The app logs and drops what is not a chunk.
            self.ignored += 1
            return None
        parts = self._parts.setdefault(chunk.message_id, {})
        self._first_at.setdefault(chunk.message_id, time.perf_counter())
        self._binary[chunk.message_id] = (
            self._binary.get(chunk.message_id, True) and binary
        )
        if chunk.index in parts:
            return None
        parts[chunk.index] = chunk.payload
        if len(parts) < chunk.total:
            return None
        del self._parts[chunk.message_id]
        return AppMessage(
            type=chunk.type,
            message_id=chunk.message_id,
            flags=chunk.flags,
            payload=b"".join(parts[i] for i in range(chunk.total)),
            binary=self._binary.pop(chunk.message_id),
            first_at=self._first_at.pop(chunk.message_id),
            completed_at=time.perf_counter(),
        )


class AndroidApp:
    """The app, signed in: it asks or accepts, then sends and receives."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.messages: asyncio.Queue[AppMessage] = asyncio.Queue()
        self.reassembler = Reassembler()
        self.channel: RTCDataChannel | None = None

    @classmethod
    async def sign_in(cls, url: str, name: str) -> AndroidApp:
        # Peer.sign_in sends {"type": "SignIn", "username": name}: no data.
        return cls(await Peer.sign_in(url, name))

    @property
    def name(self) -> str:
        return self.peer.name

    async def request(self, target: str) -> None:
        await self.peer.request(target)

    async def next_request(self, timeout: float = 15) -> str:
        """Wait for a StartConnection; return who asked."""
        while True:
            frame = await self.peer.next_event(timeout)
            if frame.get("type") == "StartConnection":
                return frame["username"]

    async def accept(self, requester: str) -> None:
        """Accept: create ``dataChannelLabel`` and send the Offer."""
        # OfferToReceiveVideo: true, though the app sends no video.
        self.peer.pc.addTransceiver("video", direction="recvonly")
        await self.peer.accept(requester)

    async def open(self, timeout: float = 20) -> RTCDataChannel:
        """Wait for the channel (made here or by the peer) to be open."""
        channel = await self.peer.open_channel(timeout)
        if self.channel is None:
            self.channel = channel
            self._read_bytes_of_string_messages(channel)
            channel.on("message", self._on_binary)
        return channel

    def _read_bytes_of_string_messages(self, channel: RTCDataChannel) -> None:
        # The app (org.webrtc) hands over a string message's bytes as they
        # came; aiortc decodes them as UTF-8 first, and fails on file bytes.
        # This double takes them before the decoding, for its own channel.
        transport = channel.transport
        deliver = transport._data_channel_receive

        async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
            if stream_id == channel.id and pp_id == WEBRTC_STRING:
                self._on_bytes(data, binary=False)
            elif stream_id == channel.id and pp_id == WEBRTC_STRING_EMPTY:
                self._on_bytes(b"", binary=False)
            else:
                await deliver(stream_id, pp_id, data)

        transport._data_channel_receive = receive

    def _on_binary(self, message: bytes | str) -> None:
        # Strings never get here (taken above).
        if isinstance(message, bytes):
            self._on_bytes(message, binary=True)

    def _on_bytes(self, data: bytes, *, binary: bool) -> None:
        message = self.reassembler.receive(data, binary=binary)
        if message is not None:
            self.messages.put_nowait(message)

    async def next_message(self, timeout: float = 30) -> AppMessage:
        return await asyncio.wait_for(self.messages.get(), timeout)

    def send(
        self,
        kind: str,
        payload: bytes,
        *,
        mime: str | None = None,
        name: str | None = None,
        binary: bool = False,
    ) -> list[Chunk]:
        """Send one message as the app does: every chunk at once, as strings.

        ``binary`` sends binary messages instead, as an app fixed to send
        ``DataChannel.Buffer(…, true)`` would.
        """
        assert self.channel is not None, "open() first"
        chunks = frame_message(kind, payload, flags=app_flags(mime=mime, name=name))
        for chunk in chunks:
            if binary:
                self.channel.send(chunk.serialize())
            else:
                send_raw_text_message(self.channel, chunk.serialize())
        return chunks

    def send_text(self, text: str) -> list[Chunk]:
        return self.send("TEXT", text.encode("utf-8"))

    async def close(self) -> None:
        await self.peer.close()
