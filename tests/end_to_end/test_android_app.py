"""The Android app's double against itself, through a real server.

Before a browser is tested against ``tests.android_app``, the double shows it
keeps the app's rules: its framing round-trips, its receiver drops what the
app drops, and two doubles exchange TEXT and a 100 KB FILE.
"""

import hashlib
import random

import pytest

from tests.android_app import (
    APP_CHANNEL_LABEL,
    CHUNK_BYTES,
    AndroidApp,
    Chunk,
    FramingError,
    Reassembler,
    app_flags,
    frame_message,
    parse_flags,
)
from tests.end_to_end.test_webrtc_peers import assert_app_frame_shapes


def test_a_message_is_cut_into_chunks_of_at_most_16000_bytes():
    chunks = frame_message("FILE", bytes(2 * CHUNK_BYTES + 1), flags="0")
    assert [len(c.payload) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 1]
    assert {c.message_id for c in chunks} == {chunks[0].message_id}
    assert [(c.index, c.total) for c in chunks] == [(0, 3), (1, 3), (2, 3)]
    wire = chunks[1].serialize()
    assert wire.startswith(f"HDR|FILE|{chunks[0].message_id}|1|3|0\n".encode())


def test_an_empty_message_is_one_empty_chunk():
    (chunk,) = frame_message("TEXT", b"")
    assert (chunk.index, chunk.total, chunk.payload) == (0, 1, b"")


def test_flags_carry_mime_and_name_escaped_as_the_app_does():
    flags = app_flags(mime="image/png", name="a|b\nc;d.png")
    assert flags == "mime=image/png;name=a_b c;d.png"
    assert parse_flags(flags) == {"mime": "image/png", "name": "a_b c;d.png"}
    assert parse_flags("0") == {"mime": "", "name": ""}
    assert parse_flags("name=x.bin") == {"mime": "", "name": "x.bin"}


@pytest.mark.parametrize(
    "data",
    [
        b"no header line",
        b"HDR|TEXT|id|0|1\nfive fields",
        b"HDR|TEXT|id|0|1|0|extra\nseven fields",
        b"HDR|SOUND|id|0|1|0\nunknown type",
        b"HDR|TEXT|id|1|1|0\nindex past the end",
        b"META_DATA_TEXT",
    ],
)
def test_what_is_not_a_chunk_is_dropped(data):
    with pytest.raises(FramingError):
        Chunk.parse(data)
    receiver = Reassembler()
    assert receiver.receive(data, binary=False) is None
    assert receiver.ignored == 1


def test_chunks_complete_a_message_in_any_order_and_repeats_are_ignored():
    payload = random.Random(1).randbytes(3 * CHUNK_BYTES)
    first, second, third = frame_message("FILE", payload, flags="name=x")
    receiver = Reassembler()
    assert receiver.receive(third.serialize(), binary=True) is None
    assert receiver.receive(first.serialize(), binary=False) is None
    assert receiver.receive(first.serialize(), binary=False) is None
    message = receiver.receive(second.serialize(), binary=True)
    assert message.payload == payload
    assert (message.type, message.name, message.binary) == ("FILE", "x", False)


async def test_two_app_doubles_exchange_text_and_a_100_kb_file(server, capsys):
    phone = await AndroidApp.sign_in(server.ws_url, "phone")
    tablet = await AndroidApp.sign_in(server.ws_url, "tablet")
    try:
        await phone.request("tablet")
        assert await tablet.next_request() == "phone"
        await tablet.accept("phone")
        tablet_channel = await tablet.open()
        phone_channel = await phone.open()
        assert tablet_channel.label == phone_channel.label == APP_CHANNEL_LABEL
        # The accepter's offer asks to receive video, as the app's does.
        offer = next(f for f in tablet.peer.sent_frames if f["type"] == "Offer")
        assert "m=video" in offer["data"]

        tablet.send_text("hello from the tablet ✓")
        message = await phone.next_message()
        assert (message.type, message.text) == ("TEXT", "hello from the tablet ✓")
        assert not message.binary

        payload = random.Random(16).randbytes(100_000)
        chunks = phone.send("FILE", payload, mime="application/zip", name="notes.zip")
        assert len(chunks) == 7
        got = await tablet.next_message()
        assert got.type == "FILE"
        assert (got.name, got.mime) == ("notes.zip", "application/zip")
        assert hashlib.sha256(got.payload).digest() == hashlib.sha256(payload).digest()
        assert_app_frame_shapes(phone.peer, tablet.peer)
        assert_app_frame_shapes(tablet.peer, phone.peer)
        with capsys.disabled():
            seconds = got.completed_at - got.first_at
            print(f"\napp double to app double: 100 KB FILE in {seconds * 1000:.0f} ms")
    finally:
        await phone.close()
        await tablet.close()
