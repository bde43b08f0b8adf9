"""Client frames unmasked and checked by C functions: the same results as
Autobahn's own masker and validator, and against a real Daphne, frames cut
anywhere still arrive whole while invalid UTF-8 still fails the connection."""

import asyncio
import base64
import json
import os
import struct

from autobahn.nvx._utf8validator import Utf8Validator
from autobahn.nvx._xormasker import create_xor_masker
from hypothesis import given
from hypothesis import strategies as st

from signaling.speedups.autobahn_frames import FrameUnmasker, Utf8Checker
from tests.clients import Client


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in zip(points, points[1:])]


@given(st.binary(min_size=4, max_size=4), st.binary(max_size=3000), st.lists(st.integers(0, 3000)))
def test_unmasking_in_pieces_gives_autobahns_bytes(mask, payload, cuts):
    ours, autobahns = FrameUnmasker(mask), create_xor_masker(mask, len(payload))
    for piece in split(payload, cuts):
        assert ours.process(piece) == autobahns.process(piece)
        assert ours.pointer() == len(payload[: ours.pointer()])


# Mostly valid UTF-8 (text in pieces, so code points get cut), sometimes
# arbitrary bytes.
texts = st.text().map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary()


@given(texts, st.lists(st.integers(0, 200), max_size=6))
def test_utf8_checks_in_pieces_agree_with_autobahns_validator(payload, cuts):
    ours, autobahns = Utf8Checker(), Utf8Validator()
    for piece in split(payload, cuts):
        valid, ends, _, _ = ours.validate(piece)
        expected_valid, expected_ends, _, _ = autobahns.validate(piece)
        assert (valid, ends) == (expected_valid, expected_ends)
        if not valid:
            break


def test_a_valid_message_reports_every_octet_checked():
    checker = Utf8Checker()
    assert checker.validate("é".encode()[:1]) == (True, False, 1, 1)
    assert checker.validate("é".encode()[1:] + b"ab") == (True, True, 3, 4)
    checker.reset()
    assert checker.validate(b"ok\xff") == (False, False, 2, 2)


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + mask + create_xor_masker(mask, len(payload)).process(payload)


async def raw_signed_in(server, name: str):
    host, port = server.http_url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    writer.write(masked_frame(0x1, json.dumps({"type": "SignIn", "username": name}).encode()))
    opcode, payload = await read_frame(reader)
    assert json.loads(payload)["type"] == "SignedIn"
    return reader, writer


async def read_frame(reader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def test_frames_cut_across_reads_and_fragments_arrive_whole(server):
    receiver = await Client.connect(server.ws_url)
    await receiver.sign_in("frames-receiver")
    reader, writer = await raw_signed_in(server, "frames-sender")
    text = json.dumps(
        {"type": "Offer", "target": "frames-receiver", "data": "v=0 é€😀 " * 200},
        ensure_ascii=False,
    ).encode()
    # One frame written in pieces that cut the header, the mask cycle and
    # multi-byte characters, each read by the server on its own.
    frame = masked_frame(0x1, text)
    for piece in split(frame, [1, 5, 7, 333, 334, 1001, 1003, 1700]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)
    relayed = await receiver.receive_json()
    assert relayed["data"] == "v=0 é€😀 " * 200
    # The same text as a fragmented message, cut inside a character.
    cut = text.index("€".encode()) + 1
    writer.write(masked_frame(0x1, text[:cut], fin=False))
    await writer.drain()
    await asyncio.sleep(0.02)
    writer.write(masked_frame(0x0, text[cut:]))
    relayed = await receiver.receive_json()
    assert relayed["data"] == "v=0 é€😀 " * 200
    writer.close()
    await receiver.close()


async def test_invalid_utf8_split_over_fragments_fails_the_connection(server):
    reader, writer = await raw_signed_in(server, "frames-invalid")
    writer.write(masked_frame(0x1, b'{"type": "Offer", "data": "\xe2\x82', fin=False))
    writer.write(masked_frame(0x0, b'A"}'))
    # As it did with Autobahn's own validator.
    await assert_connection_failed(reader, writer, server, "frames-invalid", 1007)


def frame_with_length_bytes(payload: bytes, length_bytes: bytes, masked: bool = True) -> bytes:
    """A text frame whose length field is given as is (to write the
    encodings Autobahn refuses)."""
    mask = os.urandom(4) if masked else b""
    body = create_xor_masker(mask, len(payload)).process(payload) if masked else payload
    return bytes([0x81]) + bytes([length_bytes[0] | (0x80 if masked else 0)]) + (
        length_bytes[1:] + mask + body
    )


async def test_whole_frames_read_together_are_relayed_in_order(server):
    receiver = await Client.connect(server.ws_url)
    await receiver.sign_in("whole-receiver")
    reader, writer = await raw_signed_in(server, "whole-sender")
    datas = ["short", "é" * 400, "", "x" * 100, "😀" * 30]
    frames = [
        masked_frame(0x1, json.dumps({"type": "IceCandidates", "target": "whole-receiver",
                                      "data": data}).encode())
        for data in datas
    ]
    # A ping among them takes Autobahn's own path and is answered.
    frames.insert(2, masked_frame(0x9, b"are you there"))
    writer.write(b"".join(frames))
    assert await read_frame(reader) == (0xA, b"are you there")
    for data in datas:
        assert (await receiver.receive_json())["data"] == data
    writer.close()
    await receiver.close()


async def assert_connection_failed(reader, writer, server, name: str, code: int) -> None:
    # Autobahn fails the connection by dropping it (its failByDrop); a close
    # frame, if one got out, carries ``code``.
    try:
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, code)
    except (ConnectionResetError, asyncio.IncompleteReadError):
        pass
    writer.close()
    await asyncio.sleep(0.3)
    log = server.log()
    assert "Traceback" not in log
    assert f"disconnect username={name}" in log


async def test_invalid_utf8_in_one_whole_frame_fails_the_connection(server):
    reader, writer = await raw_signed_in(server, "whole-invalid")
    writer.write(masked_frame(0x1, b'{"type": "Offer", "data": "\xff"}'))
    await assert_connection_failed(reader, writer, server, "whole-invalid", 1007)


async def test_a_length_not_minimally_encoded_fails_the_connection(server):
    reader, writer = await raw_signed_in(server, "whole-long-length")
    writer.write(frame_with_length_bytes(b"{}", bytes([126, 0, 2])))
    await assert_connection_failed(reader, writer, server, "whole-long-length", 1002)


async def test_an_unmasked_client_frame_fails_the_connection(server):
    reader, writer = await raw_signed_in(server, "whole-unmasked")
    writer.write(frame_with_length_bytes(b"{}", bytes([2]), masked=False))
    await assert_connection_failed(reader, writer, server, "whole-unmasked", 1002)


async def test_replies_of_every_length_class_are_well_formed(server):
    # 7-bit, 16-bit (written directly) and 64-bit (Autobahn's path) lengths;
    # the websockets client refuses any malformed frame.
    sender, receiver = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await sender.sign_in("lengths-sender")
    await receiver.sign_in("lengths-receiver")
    envelope = {"type": "Offer", "target": "lengths-receiver", "data": ""}
    # The largest frame the server takes in (64 KiB) makes a relayed frame
    # over 0xFFFF bytes: it carries the sender's name too.
    largest = 64 * 1024 - 6 - len(json.dumps(envelope))
    relayed = {"type": "Offer", "username": "lengths-sender", **envelope, "data": "d" * largest}
    assert len(json.dumps(relayed, separators=(",", ":"))) > 0xFFFF
    for size in (1, 90, 126, 60_000, largest, 3):
        await sender.send_json({**envelope, "data": "d" * size})
        assert len((await receiver.receive_json())["data"]) == size
    await sender.close()
    await receiver.close()
