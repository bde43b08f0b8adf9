"""ICE servers in SignedIn, GetIceServers, and fresh credentials pushed in time."""

import asyncio
import time

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from signaling.core.ice import IceServers, turn_rest_credential
from signaling.ws.ice_refresh import SessionIceServers
from tests.communicators import Peer, signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]

STUN = ["stun:stun.example.com:3478"]
TURN = ["turn:turn.example.com:3478?transport=udp"]


@pytest.fixture
def turn_secret(settings):
    settings.SIGNALING_STUN_URLS = STUN
    settings.SIGNALING_TURN_URLS = TURN
    settings.SIGNALING_TURN_SECRET = "s3cret"
    settings.SIGNALING_TURN_CREDENTIAL_TTL_SECONDS = 3600
    return settings


def assert_valid_turn_entry(entry: dict, *, name: str, expires_after: float) -> int:
    assert entry["urls"] == TURN
    expiry, _, encoded = entry["username"].partition(":")
    assert encoded == name
    assert int(expiry) >= expires_after
    assert entry["credential"] == turn_rest_credential("s3cret", entry["username"])
    return int(expiry)


async def test_signed_in_carries_stun_and_per_session_turn_credentials(turn_secret):
    peer = await Peer.connect()
    reply = await peer.sign_in("alice")
    assert reply["type"] == "SignedIn"
    assert reply["data"]["guest"] is True
    stun, turn = reply["data"]["iceServers"]
    assert stun == {"urls": STUN}
    assert_valid_turn_entry(turn, name="alice", expires_after=time.time() + 3500)


async def test_static_turn_credentials_reach_every_client_unchanged(settings):
    settings.SIGNALING_TURN_URLS = TURN
    settings.SIGNALING_TURN_USERNAME = "app"
    settings.SIGNALING_TURN_CREDENTIAL = "pw"
    peer = await Peer.connect()
    reply = await peer.sign_in("alice")
    assert reply["data"]["iceServers"] == [
        {"urls": TURN, "username": "app", "credential": "pw"}
    ]
    await peer.send(type="GetIceServers")
    assert (await peer.receive())["data"]["expiresAt"] is None


async def test_get_ice_servers_before_sign_in_is_refused(turn_secret):
    peer = await Peer.connect()
    await peer.send(type="GetIceServers")
    error = await peer.receive()
    assert (error["type"], error["code"], error["target"]) == (
        "Error",
        "not_signed_in",
        None,
    )


async def test_get_ice_servers_answers_with_fresh_credentials_and_their_expiry(
    turn_secret,
):
    alice = await signed_in("alice")
    bob = await signed_in("bob")
    await alice.send(type="GetIceServers")
    frame = await alice.receive()
    assert (frame["type"], frame["username"], frame["target"]) == (
        "IceServers",
        "server",
        "alice",
    )
    stun, turn = frame["data"]["iceServers"]
    assert stun == {"urls": STUN}
    expiry = assert_valid_turn_entry(
        turn, name="alice", expires_after=time.time() + 3500
    )
    assert frame["data"]["expiresAt"] == expiry
    assert await bob.receive_nothing()


async def test_fresh_credentials_are_pushed_before_the_old_ones_expire(turn_secret):
    turn_secret.SIGNALING_TURN_CREDENTIAL_TTL_SECONDS = 2
    peer = await Peer.connect()
    signed_in_at = time.time()
    reply = await peer.sign_in("alice")
    first_expiry = int(reply["data"]["iceServers"][1]["username"].split(":")[0])
    # Pushed at 80 % of the lifetime: 1.6 s after signing in.
    frame = await peer.receive(timeout=3)
    pushed_at = time.time()
    assert frame["type"] == "IceServers"
    # Not before 80 %; late only by scheduling, which the check below bounds
    # by what matters: the old credentials still worked.
    assert pushed_at - signed_in_at >= 1.3
    # Pushed while the first credentials still worked, and the new ones last.
    assert pushed_at < first_expiry + 1
    assert frame["data"]["expiresAt"] >= int(pushed_at) + 2
    assert_valid_turn_entry(
        frame["data"]["iceServers"][1], name="alice", expires_after=pushed_at + 1
    )
    # And again for as long as the session lives.
    assert (await peer.receive(timeout=3))["type"] == "IceServers"


async def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_nothing_is_pushed_after_the_session_ends():
    pushed: list[IceServers] = []

    async def push(servers: IceServers) -> None:
        pushed.append(servers)

    from django.test import override_settings

    with override_settings(
        SIGNALING_TURN_URLS=TURN,
        SIGNALING_TURN_SECRET="s3cret",
        SIGNALING_TURN_CREDENTIAL_TTL_SECONDS=1,
    ):
        session = SessionIceServers(push)
        session.issue("alice")
        await wait_for(lambda: len(pushed) == 1)  # at 0.8 s
        session.stop()
        # The next push would have come 0.8 s later: wait twice that.
        await asyncio.sleep(1.6)
    assert len(pushed) == 1


async def test_a_push_that_fails_stops_the_timer():
    calls = 0

    async def push(servers: IceServers) -> None:
        nonlocal calls
        calls += 1
        raise OSError("socket gone")

    from django.test import override_settings

    with override_settings(
        SIGNALING_TURN_URLS=TURN,
        SIGNALING_TURN_SECRET="s3cret",
        SIGNALING_TURN_CREDENTIAL_TTL_SECONDS=1,
    ):
        session = SessionIceServers(push)
        session.issue("alice")
        await wait_for(lambda: calls == 1)  # at 0.8 s
        # A live timer would push again 0.8 s later: wait twice that.
        await asyncio.sleep(1.6)
    assert calls == 1


def test_inconsistent_ice_settings_stop_the_server_at_start(settings):
    settings.SIGNALING_TURN_URLS = TURN
    with pytest.raises(ImproperlyConfigured, match="TURN secret or static"):
        apps.get_app_config("signaling").ready()
