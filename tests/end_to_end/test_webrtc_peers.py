"""Real WebRTC peers (aiortc) connect through a real server, the app's way."""

import asyncio
import hashlib
import json
import random
import time

from tests.peers import (
    CHUNK_SIZE,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    HIGH_WATER_BYTES,
    FileReceiver,
    MovingBarTrack,
    Peer,
    bar_position,
    send_file,
)

FIVE_MIB = 5 * 1024 * 1024


async def connect_pair(url: str, *, video=None) -> tuple[Peer, Peer]:
    """Sign alice and bob in; alice asks, bob accepts and offers."""
    alice = await Peer.sign_in(url, "alice")
    bob = await Peer.sign_in(url, "bob")
    await alice.request("bob")
    assert await bob.next_event() == {
        "type": "StartConnection",
        "username": "alice",
        "target": "bob",
    }
    await bob.accept("alice", video=video)
    return alice, bob


def assert_app_frame_shapes(sender: Peer, receiver: Peer) -> None:
    """The frames were the app's shapes and reached the other side unchanged."""
    relayed = [f for f in sender.sent_frames if f["type"] != "StartConnection"]
    kinds = {frame["type"] for frame in relayed}
    assert {"IceCandidates"} < kinds
    for frame in relayed:
        assert isinstance(frame["data"], str)
        if frame["type"] == "IceCandidates":
            candidate = json.loads(frame["data"])
            assert candidate["sdp"].startswith("candidate:")
            assert set(candidate) == {
                "sdpMid",
                "sdpMLineIndex",
                "sdp",
                "serverUrl",
                "adapterType",
            }
        else:
            assert frame["data"].startswith("v=0")
            # Candidates were trickled, not carried in the SDP.
            assert "a=candidate:" not in frame["data"]
    delivered = [
        {"type": f["type"], "data": f["data"]}
        for f in receiver.received_frames
        if f["username"] == sender.name and f["type"] != "StartConnection"
    ]
    assert delivered == [{"type": f["type"], "data": f["data"]} for f in relayed]


async def test_two_app_style_peers_transfer_a_5_mib_file_over_a_data_channel(
    server, capsys
):
    alice, bob = await connect_pair(server.ws_url)
    try:
        bob_channel, alice_channel = await asyncio.gather(
            bob.open_channel(), alice.open_channel()
        )
        receiver = FileReceiver(alice_channel)
        payload = random.Random(4).randbytes(FIVE_MIB)

        started = time.perf_counter()
        report = await send_file(bob_channel, payload, name="payload.bin")
        received = await receiver.next_file()
        seconds = time.perf_counter() - started

        assert received.size == FIVE_MIB
        assert received.sha256 == hashlib.sha256(payload).hexdigest()
        # Backpressure held: the sender never queued far past its mark.
        assert report.max_buffered <= HIGH_WATER_BYTES + CHUNK_SIZE
        assert_app_frame_shapes(bob, alice)
        assert_app_frame_shapes(alice, bob)
        rate = FIVE_MIB / seconds / 1e6
        with capsys.disabled():
            print(f"\naiortc 5 MiB transfer: {seconds:.2f} s, {rate:.1f} MB/s")
    finally:
        await alice.close()
        await bob.close()


async def test_a_video_track_reaches_the_other_peer_as_moving_decoded_frames(server):
    alice, bob = await connect_pair(server.ws_url, video=MovingBarTrack())
    try:
        track = await asyncio.wait_for(alice.tracks.get(), 20)
        assert track.kind == "video"
        positions = []
        for _ in range(15):
            frame = await asyncio.wait_for(track.recv(), 10)
            assert (frame.width, frame.height) == (FRAME_WIDTH, FRAME_HEIGHT)
            positions.append(bar_position(frame))
        # The picture moves: the bar was seen in several places.
        assert len(set(positions)) > 3, positions
    finally:
        await alice.close()
        await bob.close()
