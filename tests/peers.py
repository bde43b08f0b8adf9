"""Real WebRTC peers (aiortc) that signal through the server like the app.

A ``Peer`` follows the Android app's flow and frame shapes: the requester
sends StartConnection, the side that accepts creates the data channel and
sends the Offer as a raw SDP string, the requester answers with one, and ICE
candidates travel one per IceCandidates frame as the JSON *string* Gson makes
of an ``org.webrtc.IceCandidate`` (the candidate line under the key ``sdp``).

aiortc gathers every candidate before ``setLocalDescription`` returns and
writes them into the SDP; they are cut out of the SDP and trickled
separately so the server carries exactly what the app would send.

The file format is the web client's (``signaling/static/signaling/app/
app.js``, documented in ``docs/web-client.md``): a JSON header, binary
chunks, a JSON end marker, and an acknowledgement from the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import websockets
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtcsctptransport import WEBRTC_STRING
from aiortc.sdp import candidate_from_sdp

from tests.clients import Client

# The Android app's channel label; a channel without the web protocol below
# is taken by the web client for the app.
APP_CHANNEL_LABEL = "dataChannelLabel"
# The web client creates its channel with this sub-protocol and treats a
# peer that announces it (or says hello) as able to read the richer format.
WEB_CHANNEL_PROTOCOL = "p2p-files/1"
# 64 KiB is the largest message every current WebRTC stack accepts (the
# default a=max-message-size when a peer does not say).
CHUNK_SIZE = 64 * 1024
# Pause above this much queued data, resume when the queue drains below
# the low-water mark: enough in flight to keep the link busy while
# bounding memory (Chrome closes a channel whose buffer passes 16 MiB).
HIGH_WATER_BYTES = 4 * 1024 * 1024
LOW_WATER_BYTES = 1024 * 1024


def split_candidates(sdp: str) -> tuple[str, list[tuple[str | None, int, str]]]:
    """Return ``sdp`` without candidate lines, and the candidates.

    Each candidate is ``(sdpMid, sdpMLineIndex, "candidate:...")``.
    """
    kept: list[str] = []
    candidates: list[tuple[str | None, int, str]] = []
    mline_index = -1
    mid: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline_index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        if line.startswith("a=candidate:"):
            candidates.append((mid, mline_index, line[len("a=") :]))
        elif line != "a=end-of-candidates":
            kept.append(line)
    # A candidate line sits after a=mid in aiortc's output, so each one
    # already knows its section's mid.
    return "\r\n".join(kept) + "\r\n", candidates


def app_candidate(mid: str | None, mline_index: int, line: str) -> str:
    """Encode a candidate the way the Android app does (Gson of IceCandidate)."""
    return json.dumps(
        {
            "sdpMid": mid,
            "sdpMLineIndex": mline_index,
            "sdp": line,
            "serverUrl": "",
            "adapterType": "UNKNOWN",
        }
    )


def parse_candidate(data: Any) -> RTCIceCandidate | None:
    """Decode a candidate in the app's JSON-string or a browser's object form.

    Returns None for an end-of-candidates marker (an empty candidate line).
    """
    if isinstance(data, str):
        data = json.loads(data)
    line = data.get("candidate") or data.get("sdp") or ""
    if not line:
        return None
    candidate = candidate_from_sdp(line.removeprefix("candidate:"))
    candidate.sdpMid = data.get("sdpMid")
    candidate.sdpMLineIndex = data.get("sdpMLineIndex")
    return candidate


def parse_description(data: Any, implied_type: str) -> RTCSessionDescription:
    """Decode an Offer or Answer: a raw SDP string or a browser's object."""
    if isinstance(data, str):
        return RTCSessionDescription(sdp=data, type=implied_type)
    return RTCSessionDescription(sdp=data["sdp"], type=data.get("type", implied_type))


@dataclass
class Peer:
    """One signed-in user with one peer connection, driven by a test."""

    name: str
    client: Client
    pc: RTCPeerConnection = field(
        # No STUN or TURN: host candidates on this machine's own interface
        # are enough, and tests must not depend on outside servers.
        default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[]))
    )
    target: str | None = None
    # Frames the signaling loop does not handle itself, for the test.
    events: asyncio.Queue[dict] = field(default_factory=asyncio.Queue)
    channel: asyncio.Future[RTCDataChannel] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    tracks: asyncio.Queue[MediaStreamTrack] = field(default_factory=asyncio.Queue)
    # When set, no candidate is sent or used, as if a firewall stood
    # between the peers: ICE can never connect.
    ice_blocked: bool = False
    sent_frames: list[dict] = field(default_factory=list)
    received_frames: list[dict] = field(default_factory=list)
    _pending_candidates: list[RTCIceCandidate] = field(default_factory=list)
    _loop_task: asyncio.Task | None = None

    @classmethod
    async def sign_in(
        cls,
        url: str,
        name: str,
        *,
        configuration: Callable[[dict], RTCConfiguration] | None = None,
    ) -> Peer:
        """Sign in; ``configuration`` makes the peer connection's settings
        from the SignedIn frame (e.g. its ICE servers)."""
        client = await Client.connect(url)
        reply = await client.sign_in(name)
        assert reply["type"] == "SignedIn", reply
        if configuration is None:
            peer = cls(name=name, client=client)
        else:
            pc = RTCPeerConnection(configuration(reply))
            peer = cls(name=name, client=client, pc=pc)
        peer.pc.on("datachannel", peer._channel_arrived)
        peer.pc.on("track", peer.tracks.put_nowait)
        peer._loop_task = asyncio.create_task(peer._signaling_loop())
        return peer

    async def send(self, frame: dict) -> None:
        self.sent_frames.append(frame)
        await self.client.send_json(frame)

    async def request(self, target: str) -> None:
        """Ask ``target`` for a connection, as the app's Connect button does."""
        self.target = target
        await self.send(
            {"type": "StartConnection", "username": self.name, "target": target}
        )

    async def accept(
        self,
        requester: str,
        *,
        protocol: str = "",
        video: MediaStreamTrack | None = None,
    ) -> RTCDataChannel:
        """Accept ``requester``'s request: create the channel and offer."""
        self.target = requester
        channel = self.pc.createDataChannel(APP_CHANNEL_LABEL, protocol=protocol)
        channel.on("open", lambda: self._channel_open(channel))
        if video is not None:
            self.pc.addTrack(video)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description("Offer")
        return channel

    async def next_event(self, timeout: float = 10) -> dict:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def open_channel(self, timeout: float = 20) -> RTCDataChannel:
        return await asyncio.wait_for(asyncio.shield(self.channel), timeout)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.pc.close()
        await self.client.close()

    # Signaling.

    async def _signaling_loop(self) -> None:
        # Frames are handled one at a time, so a candidate is never applied
        # while the description it belongs to is still being set.
        while True:
            try:
                text = await self.client.connection.recv()
            except websockets.ConnectionClosed:
                return
            frame = json.loads(text)
            self.received_frames.append(frame)
            kind = frame.get("type")
            if kind == "Offer":
                self.target = frame["username"]
                await self._set_remote(parse_description(frame["data"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self._send_description("Answer")
            elif kind == "Answer":
                await self._set_remote(parse_description(frame["data"], "answer"))
            elif kind == "IceCandidates":
                candidate = parse_candidate(frame["data"])
                if candidate is None or self.ice_blocked:
                    continue
                if self.pc.remoteDescription is None:
                    self._pending_candidates.append(candidate)
                else:
                    await self.pc.addIceCandidate(candidate)
            else:
                self.events.put_nowait(frame)

    async def _set_remote(self, description: RTCSessionDescription) -> None:
        await self.pc.setRemoteDescription(description)
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self.pc.addIceCandidate(candidate)

    async def _send_description(self, kind: str) -> None:
        sdp, candidates = split_candidates(self.pc.localDescription.sdp)
        await self.send(
            {"type": kind, "username": self.name, "target": self.target, "data": sdp}
        )
        for mid, index, line in [] if self.ice_blocked else candidates:
            await self.send(
                {
                    "type": "IceCandidates",
                    "username": self.name,
                    "target": self.target,
                    "data": app_candidate(mid, index, line),
                }
            )

    def _channel_arrived(self, channel: RTCDataChannel) -> None:
        # The answerer's channel arrives already open.
        self._channel_open(channel)

    def _channel_open(self, channel: RTCDataChannel) -> None:
        if not self.channel.done():
            self.channel.set_result(channel)


# The web client's file format.

_ids = itertools.count(1)


@dataclass
class SendReport:
    seconds: float
    max_buffered: int


async def send_file(
    channel: RTCDataChannel,
    payload: bytes,
    *,
    name: str,
    mime: str = "application/octet-stream",
    chunk_size: int = CHUNK_SIZE,
) -> SendReport:
    """Send ``payload`` as one file, pausing while the channel's buffer is full."""
    file_id = f"py-{next(_ids)}"
    drained = asyncio.Event()
    channel.bufferedAmountLowThreshold = LOW_WATER_BYTES
    channel.on("bufferedamountlow", drained.set)
    started = time.perf_counter()
    max_buffered = 0
    channel.send(
        json.dumps(
            {
                "kind": "file",
                "id": file_id,
                "name": name,
                "size": len(payload),
                "type": mime,
            }
        )
    )
    for offset in range(0, len(payload), chunk_size):
        if channel.bufferedAmount > HIGH_WATER_BYTES:
            # The low event fires from the transport's task, never between
            # this check and the clear, so no wake-up is lost.
            drained.clear()
            await asyncio.wait_for(drained.wait(), 20)
        channel.send(payload[offset : offset + chunk_size])
        max_buffered = max(max_buffered, channel.bufferedAmount)
    channel.send(json.dumps({"kind": "end", "id": file_id}))
    channel.remove_listener("bufferedamountlow", drained.set)
    return SendReport(seconds=time.perf_counter() - started, max_buffered=max_buffered)


@dataclass
class ReceivedFile:
    name: str
    mime: str
    size: int
    sha256: str


class FileReceiver:
    """Collects files in the web client's format from one channel.

    JSON control messages other than file headers and end markers go to
    ``messages``; each completed file is acknowledged with ``done`` as the
    web client does, so its sender can show the file as delivered.
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self.files: asyncio.Queue[ReceivedFile] = asyncio.Queue()
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._header: dict | None = None
        self._hash = hashlib.sha256()
        self._received = 0
        channel.on("message", self._on_message)

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if self._header is None:
                self.messages.put_nowait(message)
                return
            self._hash.update(message)
            self._received += len(message)
            return
        try:
            content = json.loads(message)
        except ValueError:
            content = None
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "file":
            self._header = content
            self._hash = hashlib.sha256()
            self._received = 0
        elif kind == "end" and self._header is not None:
            header, self._header = self._header, None
            assert self._received == header["size"], (self._received, header)
            self.channel.send(json.dumps({"kind": "done", "id": header["id"]}))
            self.files.put_nowait(
                ReceivedFile(
                    name=header["name"],
                    mime=header["type"],
                    size=self._received,
                    sha256=self._hash.hexdigest(),
                )
            )
        else:
            self.messages.put_nowait(message)

    async def next_file(self, timeout: float = 30) -> ReceivedFile:
        return await asyncio.wait_for(self.files.get(), timeout)

    async def next_message(self, timeout: float = 20) -> str | bytes:
        return await asyncio.wait_for(self.messages.get(), timeout)


def send_raw_text_message(channel: RTCDataChannel, data: bytes) -> None:
    """Send ``data`` as a *text* message, whatever its bytes, as the app does.

    The Android app sends image bytes in a text (PPID 51) message. aiortc's
    public ``send`` makes text only from ``str``, so the message is queued
    through its transport's internals, exactly as ``send`` would queue it.
    """
    transport = channel.transport
    channel._addBufferedAmount(len(data))
    transport._data_channel_queue.append((channel, WEBRTC_STRING, data))
    asyncio.ensure_future(transport._data_channel_flush())


# Video.

FRAME_WIDTH = 320
FRAME_HEIGHT = 240
BAR_WIDTH = 32


class MovingBarTrack(VideoStreamTrack):
    """A synthetic picture: a white bar sliding across a dark frame."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(FRAME_WIDTH, FRAME_HEIGHT, "yuv420p")
        left = (self._count * 8) % (FRAME_WIDTH - BAR_WIDTH)
        self._count += 1
        row = bytes(
            235 if left <= x < left + BAR_WIDTH else 16 for x in range(FRAME_WIDTH)
        )
        frame.planes[0].update(row * FRAME_HEIGHT)
        # Neutral chroma: a grey picture.
        for plane in frame.planes[1:]:
            plane.update(b"\x80" * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def bar_position(frame: av.VideoFrame) -> int:
    """Return the x of the brightest column in the middle row of ``frame``."""
    plane = frame.planes[0]
    middle = bytes(plane)[plane.line_size * (frame.height // 2) :][: frame.width]
    return max(range(frame.width), key=middle.__getitem__)
