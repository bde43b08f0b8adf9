"""ICE server lists and TURN REST credentials, without any I/O."""

import pytest

from signaling.core import ice
from signaling.core.ice import IceConfig, ice_servers_for

NOW = 1_700_000_000.7
STUN = ("stun:stun.example.com:3478",)
TURN = ("turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349")


def test_nothing_configured_gives_an_empty_list_that_never_expires():
    issued = ice_servers_for(IceConfig(), username="alice", now=NOW)
    assert (issued.servers, issued.expires_at, issued.refresh_in) == ([], None, None)


def test_stun_only_gives_one_entry_without_credentials():
    issued = ice_servers_for(IceConfig(stun_urls=STUN), username="alice", now=NOW)
    assert issued.servers == [{"urls": list(STUN)}]
    assert issued.expires_at is None


def test_static_turn_credentials_are_handed_out_as_configured():
    config = IceConfig(
        stun_urls=STUN, turn_urls=TURN, turn_username="app", turn_credential="pw"
    )
    issued = ice_servers_for(config, username="alice", now=NOW)
    assert issued.servers == [
        {"urls": list(STUN)},
        {"urls": list(TURN), "username": "app", "credential": "pw"},
    ]
    assert (issued.expires_at, issued.refresh_in) == (None, None)


def test_shared_secret_mints_turn_rest_credentials_for_the_signed_in_name():
    config = IceConfig(
        turn_urls=TURN, turn_secret="s3cret", credential_ttl_seconds=3600
    )
    issued = ice_servers_for(config, username="alice", now=NOW)
    # Expected values computed independently:
    # printf '%s' 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert issued.servers == [
        {
            "urls": list(TURN),
            "username": "1700003600:alice",
            "credential": "YAFdW/YDZewZsR1QSgUk2IrfbRI=",
        }
    ]
    assert issued.expires_at == 1_700_003_600
    assert issued.refresh_in == pytest.approx(0.8 * 3600)


def test_names_coturn_would_drop_are_percent_encoded_in_the_turn_username():
    # coturn silently ignores usernames with spaces, quotes or backslashes.
    username = ice.turn_rest_username('a b"c', expires_at=1_700_003_600)
    assert username == "1700003600:a%20b%22c"
    # printf '%s' '1700003600:a%20b%22c' | openssl dgst -sha1 -hmac s3cret ...
    assert (
        ice.turn_rest_credential("s3cret", username) == "tag8YXnLsNDix2COPp6EPrWTVRw="
    )
    for name in ["名前", "x:y", "a\\b", "it's", "a OR b", "🙂"]:
        encoded = ice.turn_rest_username(name, expires_at=1)
        assert encoded.count(":") == 1
        assert all(c.isascii() and (c.isalnum() or c in "%-_.~:") for c in encoded)


def test_turn_usernames_stay_within_the_stun_limit_for_the_longest_names():
    longest = "🙂" * 64
    username = ice.turn_rest_username(longest, expires_at=1_700_003_600)
    assert len(username.encode()) < 513
    assert username != ice.turn_rest_username("🙃" * 64, expires_at=1_700_003_600)


@pytest.mark.parametrize(
    "kwargs, complaint",
    [
        ({"stun_urls": ("turn:x",)}, "stun:"),
        ({"turn_urls": ("stun:x",), "turn_secret": "s"}, "turn:"),
        ({"turn_urls": TURN}, "need a TURN secret"),
        ({"turn_secret": "s"}, "no TURN URLs"),
        ({"turn_urls": TURN, "turn_username": "u"}, "needs a credential"),
        (
            {"turn_urls": TURN, "turn_secret": "s", "turn_username": "u"},
            "not both",
        ),
        (
            {"turn_urls": TURN, "turn_secret": "s", "credential_ttl_seconds": 0},
            "at least 1 second",
        ),
    ],
)
def test_inconsistent_settings_are_refused(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        IceConfig(**kwargs)
