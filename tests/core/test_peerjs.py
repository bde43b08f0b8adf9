"""The PeerJS codec: pure, table-driven."""

from __future__ import annotations

import json

import pytest

from signaling.core import peerjs
from signaling.core.peerjs import (
    Dropped,
    Heartbeat,
    Ignored,
    MessageType,
    PeerJSRefusal,
    Relay,
    Undeliverable,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"HEARTBEAT"}', Heartbeat()),
        (
            '{"type":"OFFER","dst":"bob","payload":{"sdp":"x"}}',
            Relay(MessageType.OFFER, "bob", {"sdp": "x"}),
        ),
        ('{"type":"LEAVE","dst":"bob"}', Relay(MessageType.LEAVE, "bob", None)),
        ('{"type":"EXPIRE","dst":"bob"}', Relay(MessageType.EXPIRE, "bob", None)),
        ("not json", Dropped(Ignored.INVALID_JSON)),
        ('{"type":"OFFER","dst":"b","payload":NaN}', Dropped(Ignored.INVALID_JSON)),
        ("[]", Dropped(Ignored.NOT_AN_OBJECT)),
        ("{}", Dropped(Ignored.UNKNOWN_TYPE)),
        ('{"type":"OPEN"}', Dropped(Ignored.UNKNOWN_TYPE)),
        ('{"type":"offer","dst":"bob"}', Dropped(Ignored.UNKNOWN_TYPE)),
        ('{"type":7}', Dropped(Ignored.UNKNOWN_TYPE)),
        ('{"type":"ANSWER"}', Dropped(Ignored.NO_DESTINATION)),
        ('{"type":"ANSWER","dst":3}', Dropped(Ignored.NO_DESTINATION)),
        ('{"type":"ANSWER","dst":"no/such"}', Undeliverable("no/such", "invalid_id")),
    ],
)
def test_client_frames_decode_to_messages(text, expected):
    assert peerjs.decode_frame(text) == expected


def test_binary_frames_are_dropped():
    assert peerjs.decode_frame(None, b"x") == Dropped(Ignored.BINARY)


def test_an_oversized_relay_is_undeliverable_to_its_dst():
    frame = json.dumps({"type": "OFFER", "dst": "bob", "payload": "x" * 200_000})
    assert peerjs.decode_frame(frame) == Undeliverable("bob", "frame_too_large")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("alice", True),
        ("a-b_c d9", True),
        ("0d2c1f0e-3b9a-4c5e-9f0a-1b2c3d4e5f60", True),
        ("", False),
        ("-alice", False),
        ("a--b", False),
        ("a:b", False),
        ("é", False),
        ("a" * peerjs.MAX_ID_LENGTH, True),
        ("a" * (peerjs.MAX_ID_LENGTH + 1), False),
        (None, False),
    ],
)
def test_ids_follow_peerjs_servers_pattern(value, valid):
    assert peerjs.valid_id(value) is valid


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"key": "peerjs", "id": "a"}, "missing_parameters"),
        ({"key": "peerjs", "token": "t"}, "missing_parameters"),
        ({"id": "a", "token": "t"}, "missing_parameters"),
        ({"key": "other", "id": "a", "token": "t"}, "invalid_key"),
        ({"key": "peerjs", "id": "a!", "token": "t"}, "invalid_id"),
        ({"key": "peerjs", "id": "a", "token": "t" * 300}, "invalid_token"),
    ],
)
def test_bad_handshakes_are_refused_with_error(query, reason):
    with pytest.raises(PeerJSRefusal) as refusal:
        peerjs.check_handshake(query, key="peerjs")
    assert refusal.value.reason == reason
    assert json.loads(refusal.value.frame)["type"] == "ERROR"


def test_a_good_handshake_names_id_and_token():
    query = {"key": "k", "id": "alice", "token": "t", "version": "1.5.5"}
    assert peerjs.check_handshake(query, key="k") == peerjs.Handshake("alice", "t")


def test_relayed_frames_carry_only_type_src_dst_payload():
    relay = Relay(MessageType.CANDIDATE, "bob", {"candidate": "c"})
    assert json.loads(peerjs.relay_frame(relay, src="alice")) == {
        "type": "CANDIDATE",
        "src": "alice",
        "dst": "bob",
        "payload": {"candidate": "c"},
    }


def test_server_frames_match_peerjs_server():
    assert peerjs.open_frame() == '{"type":"OPEN"}'
    assert (
        peerjs.id_taken_frame() == '{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}'
    )
    assert peerjs.expire_frame(src="bob", dst="alice") == (
        '{"type":"EXPIRE","src":"bob","dst":"alice"}'
    )


def test_peerjs_claims_are_reserved_app_names():
    from signaling.core import protocol

    assert protocol.reserved_name(peerjs.claim_name("alice"))
