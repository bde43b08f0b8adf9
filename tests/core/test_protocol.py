"""Frame decoding and reply building, without any I/O."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.core import protocol
from signaling.core.protocol import ErrorCode, MessageType, ProtocolError, Relay, SignIn

BAD_FRAMES = [
    ("not json", ErrorCode.INVALID_JSON),
    ("", ErrorCode.INVALID_JSON),
    ("{", ErrorCode.INVALID_JSON),
    ("NaN", ErrorCode.INVALID_JSON),
    ('{"type":"Offer","target":"b","data":Infinity}', ErrorCode.INVALID_JSON),
    ("1" * 5000, ErrorCode.INVALID_JSON),
    ("[" * 50_000, ErrorCode.INVALID_JSON),
    ("[]", ErrorCode.NOT_AN_OBJECT),
    ('"SignIn"', ErrorCode.NOT_AN_OBJECT),
    ("42", ErrorCode.NOT_AN_OBJECT),
    ("null", ErrorCode.NOT_AN_OBJECT),
    ("{}", ErrorCode.MISSING_TYPE),
    ('{"type":null}', ErrorCode.MISSING_TYPE),
    ('{"username":"a"}', ErrorCode.MISSING_TYPE),
    ('{"type":1}', ErrorCode.INVALID_FIELD),
    ('{"type":["SignIn"]}', ErrorCode.INVALID_FIELD),
    ('{"type":"Hello"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type":"signin","username":"a"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type":"Error","data":"x"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type":"SignedIn"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type":"IceServers"}', ErrorCode.UNKNOWN_TYPE),
    ('{"type":"SignIn"}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":7}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":""}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":" alice"}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":"alice\\n"}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":"al\\u0000ice"}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":"al\\u202eice"}', ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":"\\ud800"}', ErrorCode.INVALID_USERNAME),
    (json.dumps({"type": "SignIn", "username": "a" * 65}), ErrorCode.INVALID_USERNAME),
    ('{"type":"SignIn","username":"a","data":5}', ErrorCode.INVALID_FIELD),
    ('{"type":"SignIn","username":"a","data":{"p":1}}', ErrorCode.INVALID_FIELD),
    ('{"type":"Offer","data":"sdp"}', ErrorCode.INVALID_FIELD),
    ('{"type":"Offer","target":5,"data":"sdp"}', ErrorCode.INVALID_FIELD),
    ('{"type":"Answer","target":"b","data":true}', ErrorCode.INVALID_FIELD),
    ('{"type":"IceCandidates","target":"b","data":3.5}', ErrorCode.INVALID_FIELD),
    ('{"type":"Offer","target":"b","username":5}', ErrorCode.USERNAME_MISMATCH),
    ('{"type":"Offer","target":"b","username":{}}', ErrorCode.USERNAME_MISMATCH),
    ("x" * (protocol.MAX_FRAME_BYTES + 1), ErrorCode.FRAME_TOO_LARGE),
    ("é" * (protocol.MAX_FRAME_BYTES // 2 + 1), ErrorCode.FRAME_TOO_LARGE),
]


@pytest.mark.parametrize("frame, code", BAD_FRAMES)
def test_each_bad_frame_maps_to_its_error_code(frame, code):
    with pytest.raises(ProtocolError) as raised:
        protocol.decode_frame(frame)
    assert raised.value.code is code
    assert raised.value.message


def test_a_binary_frame_is_refused():
    with pytest.raises(ProtocolError) as raised:
        protocol.decode_frame(None, b'{"type":"SignIn","username":"a"}')
    assert raised.value.code is ErrorCode.BINARY_FRAME


def test_the_apps_sign_in_without_data_has_no_password():
    assert protocol.decode_frame('{"type":"SignIn","username":"alice"}') == SignIn(
        username="alice", password=None
    )


def test_sign_in_with_a_password():
    frame = '{"type":"SignIn","username":"Alice","data":"pw"}'
    assert protocol.decode_frame(frame) == SignIn(username="Alice", password="pw")


@pytest.mark.parametrize(
    "data",
    [
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n",
        json.dumps({"sdpMid": "0", "sdpMLineIndex": 0, "sdp": "candidate:1"}),
        {"type": "offer", "sdp": "v=0\r\n"},
        [{"candidate": "candidate:1", "sdpMid": "0"}],
        None,
    ],
)
def test_relay_data_reaches_the_target_as_the_same_json_value(data):
    frame = json.dumps(
        {"type": "Offer", "username": "alice", "target": "bob", "data": data}
    )
    relay = protocol.decode_frame(frame)
    assert isinstance(relay, Relay)
    out = json.loads(protocol.relay_frame(relay, sender="alice"))
    assert out == {"type": "Offer", "username": "alice", "target": "bob", "data": data}


def test_a_relay_without_username_is_accepted_and_stamped_later():
    relay = protocol.decode_frame('{"type":"Answer","target":"bob","data":"sdp"}')
    assert relay == Relay(
        type=MessageType.ANSWER, target="bob", data="sdp", claimed_username=None
    )


def test_start_connection_is_relayed_without_data():
    relay = protocol.decode_frame(
        '{"type":"StartConnection","username":"a","target":"b","data":"x"}'
    )
    assert protocol.relay_frame(relay, sender="a") == (
        '{"type":"StartConnection","username":"a","target":"b"}'
    )


def test_target_not_found_error_starts_with_the_original_servers_bytes():
    frame = protocol.error_frame(
        ErrorCode.TARGET_NOT_FOUND, protocol.TARGET_NOT_FOUND_MESSAGE, target="alice"
    )
    original = (
        '{"type":"Error","username":"server","target":"alice",'
        '"data":"Target user not found"'
    )
    assert frame == original + ',"code":"target_not_found"}'


def test_group_names_are_safe_for_any_username():
    for username in ["alice", "Alice", "名前", "a b", "x" * 64, "🙂"]:
        name = protocol.group_name(username)
        assert len(name) < 100
        assert all(char.isascii() and (char.isalnum() or char in "-_.") for char in name)
    assert protocol.group_name("alice") != protocol.group_name("Alice")


def test_server_frames_keep_the_original_envelope():
    for frame in [
        protocol.signed_in_frame("alice", guest=True, ice_servers=[]),
        protocol.ice_servers_frame("alice", ice_servers=[], expires_at=None),
        protocol.peer_left_frame("bob", target="alice", reason="disconnected"),
        protocol.session_replaced_frame("alice"),
    ]:
        assert list(json.loads(frame))[:4] == ["type", "username", "target", "data"]


def test_get_ice_servers_has_no_fields_and_ignores_extra_ones():
    for frame in ['{"type":"GetIceServers"}', '{"type":"GetIceServers","data":5}']:
        assert protocol.decode_frame(frame) == protocol.GetIceServers()


def test_signed_in_and_ice_servers_frames_carry_the_server_list():
    servers = [{"urls": ["stun:stun.example.com:3478"]}]
    signed_in = json.loads(
        protocol.signed_in_frame("alice", guest=False, ice_servers=servers)
    )
    assert signed_in["data"] == {"guest": False, "iceServers": servers}
    fresh = json.loads(
        protocol.ice_servers_frame("alice", ice_servers=servers, expires_at=1700000000)
    )
    assert fresh == {
        "type": "IceServers",
        "username": "server",
        "target": "alice",
        "data": {"iceServers": servers, "expiresAt": 1700000000},
    }


def test_a_lone_surrogate_in_data_still_encodes_to_utf8():
    relay = protocol.decode_frame('{"type":"Offer","target":"b","data":"\\udc00"}')
    protocol.relay_frame(relay, sender="a").encode("utf-8")


@given(st.text(max_size=300))
def test_any_text_decodes_to_a_message_or_a_protocol_error(text):
    try:
        protocol.decode_frame(text)
    except ProtocolError:
        pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "username", "target", "data", "x"]),
            children,
            max_size=5,
        ),
        max_leaves=20,
    )
)
def test_any_json_value_decodes_to_a_message_or_a_protocol_error(value):
    try:
        protocol.decode_message(value)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_any_bytes_as_text_decode_to_a_message_or_a_protocol_error(data):
    try:
        protocol.decode_frame(data.decode("utf-8", "surrogateescape"))
    except ProtocolError:
        pass


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


def _outcome(decode, text):
    try:
        return "value", decode(text)
    except Exception as error:  # the type is what must agree
        return "error", type(error)


@given(
    JSON_VALUES,
    st.sampled_from(["", " ", "\n", "\t\r "]),
    st.sampled_from(["", " ", "\n", "x", "{}", "]", ",1"]),
)
def test_frames_decode_as_the_standard_decoder_decodes_them(value, before, after):
    text = before + json.dumps(value) + after
    standard = json.JSONDecoder(parse_constant=protocol._reject_constant).decode
    assert repr(_outcome(protocol.decode_json, text)) == repr(_outcome(standard, text))


@given(st.text(max_size=100))
def test_any_text_decodes_as_the_standard_decoder_decodes_it(text):
    standard = json.JSONDecoder(parse_constant=protocol._reject_constant).decode
    assert repr(_outcome(protocol.decode_json, text)) == repr(_outcome(standard, text))


@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6))
def test_frames_encode_as_json_dumps_encodes_them(content):
    assert protocol.encode(content) == json.dumps(content, separators=(",", ":"))


def test_a_json_value_decodes_from_where_it_begins_to_where_it_ends():
    text = '{"data":{"a":[1,"}"]},"more":1}'
    assert protocol.decode_json_at(text, 8) == ({"a": [1, "}"]}, 21)


@pytest.mark.parametrize(
    "text", ['{"data": 1}', '{"data":}', '{"data":NaN}', '{"data":"open']
)
def test_no_json_value_beginning_at_a_place_is_a_value_error(text):
    with pytest.raises(ValueError):
        protocol.decode_json_at(text, 8)
