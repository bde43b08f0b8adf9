"""The PeerJS codec: pure, table-driven."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from tests.core.test_protocol import JSON_VALUES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"HEARTBEAT"}', Heartbeat()),
        ('{ "type": "HEARTBEAT" }', Heartbeat()),
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


def test_relayed_frames_are_what_encode_makes_of_them():
    relay = Relay(MessageType.OFFER, "bob", {"sdp": {"type": "offer", "sdp": "é"}})
    content = {"type": "OFFER", "src": "al ice", "dst": "bob", "payload": relay.payload}
    assert peerjs.relay_frame(relay, src="al ice") == json.dumps(
        content, separators=(",", ":")
    )


def test_a_relay_without_payload_is_relayed_without_one():
    relay = Relay(MessageType.LEAVE, "bob", None)
    assert peerjs.relay_frame(relay, src="alice") == (
        '{"type":"LEAVE","src":"alice","dst":"bob"}'
    )


def client_layout(payload: str) -> str:
    """A CANDIDATE for bob as the peerjs client writes it."""
    return '{"type":"CANDIDATE","payload":' + payload + ',"dst":"bob"}'


def test_the_peerjs_clients_layout_keeps_the_payload_as_it_was_written():
    payload = '{"candidate": {"sdpMid": "0"}, "type":"data"}'
    relay = peerjs.decode_frame(client_layout(payload))
    assert relay == Relay(MessageType.CANDIDATE, "bob", json.loads(payload))
    assert relay.payload_json == payload
    assert peerjs.relay_frame(relay, src="alice") == (
        '{"type":"CANDIDATE","src":"alice","dst":"bob","payload":' + payload + "}"
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"CANDIDATE","payload":{},"dst":"bob","src":"mallory"}',
        '{"type":"CANDIDATE","src":"mallory","payload":{},"dst":"bob"}',
        '{"type":"CANDIDATE","payload":{},"src":"mallory","dst":"bob"}',
    ],
)
def test_a_src_the_client_sent_never_reaches_the_peer(text):
    relay = peerjs.decode_frame(text)
    assert "mallory" not in peerjs.relay_frame(relay, src="alice")


def test_a_payload_holding_an_envelope_is_read_to_its_own_end():
    payload = json.dumps('x","dst":"eve"}')
    relay = peerjs.decode_frame(client_layout(payload))
    assert relay == Relay(MessageType.CANDIDATE, "bob", 'x","dst":"eve"}')


def test_a_non_ascii_payload_is_encoded_again():
    relay = peerjs.decode_frame(client_layout('"é"'))
    assert relay == Relay(MessageType.CANDIDATE, "bob", "é")
    assert relay.payload_json is None
    assert peerjs.relay_frame(relay, src="a").isascii()


@given(
    JSON_VALUES,
    st.sampled_from(["", " "]),
    st.sampled_from(["bob", "b-2", "no/such", 'q"', "b\\u0062", ""]),
)
def test_frames_in_the_clients_layout_decode_as_in_any_other(payload, space, dst):
    written = json.dumps(payload, separators=(",", ":"))
    text = '{"type":"OFFER","payload":' + space + written + ',"dst":"' + dst + '"}'
    reordered = '{"dst":"' + dst + '","type":"OFFER","payload":' + written + "}"
    decoded = peerjs.decode_frame(text)
    assert repr(decoded) == repr(peerjs.decode_frame(reordered))
    if isinstance(decoded, Relay):
        relayed = json.loads(peerjs.relay_frame(decoded, src="alice"))
        expected = {"type": "OFFER", "src": "alice", "dst": decoded.dst}
        if payload is not None:
            expected["payload"] = json.loads(written)
        assert repr(relayed) == repr(expected)


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
