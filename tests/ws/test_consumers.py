"""The consumer against the real ASGI application, in process."""

import asyncio

import pytest
from django.contrib.auth.models import User

from signaling.models import LiveSession
from signaling.presence.live_sessions import live_sessions_disconnect
from signaling.presence.registry import registry
from tests.communicators import Peer, signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]

RELAY_TYPES = [
    "StartConnection",
    "Offer",
    "Answer",
    "IceCandidates",
    "DeclineConnection",
]


async def wait_for(predicate, timeout=2.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def session_count(**filters) -> int:
    from asgiref.sync import sync_to_async

    return await sync_to_async(LiveSession.objects.filter(**filters).count)()


@pytest.mark.parametrize("relay_type", RELAY_TYPES)
async def test_each_relay_type_reaches_only_its_addressee_with_the_sender_stamped(
    relay_type,
):
    alice, bob, carol = [await signed_in(name) for name in ("alice", "bob", "carol")]
    await alice.send(type=relay_type, target="bob", data="payload")
    frame = await bob.receive()
    assert frame["type"] == relay_type
    assert frame["username"] == "alice"
    assert frame["target"] == "bob"
    if relay_type == "StartConnection":
        assert "data" not in frame
    else:
        assert frame["data"] == "payload"
    assert await carol.receive_nothing()
    assert await alice.receive_nothing()


async def test_sign_in_is_acknowledged():
    peer = await Peer.connect()
    assert await peer.sign_in("alice") == {
        "type": "SignedIn",
        "username": "server",
        "target": "alice",
        "data": {"guest": True, "iceServers": []},
    }


@pytest.mark.parametrize("spoofed", ["bob", "", "carol"])
async def test_a_relay_claiming_another_username_is_refused_and_not_relayed(spoofed):
    alice, bob = await signed_in("alice"), await signed_in("bob")
    await alice.send(type="Offer", username=spoofed, target="bob", data="sdp")
    error = await alice.receive()
    assert error["type"] == "Error"
    assert error["code"] == "username_mismatch"
    assert await bob.receive_nothing()


@pytest.mark.parametrize("relay_type", RELAY_TYPES)
async def test_a_relay_to_an_offline_user_gets_the_originals_error(relay_type):
    alice = await signed_in("alice")
    await alice.send(type=relay_type, username="alice", target="nobody", data="x")
    assert await alice.receive() == {
        "type": "Error",
        "username": "server",
        "target": "alice",
        "data": "Target user not found",
        "code": "target_not_found",
    }


async def test_relays_before_sign_in_are_refused():
    bob = await signed_in("bob")
    stranger = await Peer.connect()
    await stranger.send(type="Offer", username="alice", target="bob", data="sdp")
    error = await stranger.receive()
    assert (error["code"], error["target"]) == ("not_signed_in", None)
    assert await bob.receive_nothing()


async def test_a_second_sign_in_under_another_name_is_refused():
    alice, bob = await signed_in("alice"), await signed_in("bob")
    reply = await alice.sign_in("mallory")
    assert reply["code"] == "already_signed_in"
    assert await registry.lookup("mallory") is None
    await alice.send(type="Offer", target="bob", data="sdp")
    assert (await bob.receive())["username"] == "alice"


async def test_signing_in_again_under_the_same_name_is_acknowledged_again():
    alice = await signed_in("alice")
    assert (await alice.sign_in("alice"))["type"] == "SignedIn"
    assert len(registry) == 1


async def test_bad_frames_get_errors_and_the_socket_keeps_relaying():
    alice, bob = await signed_in("alice"), await signed_in("bob")
    for garbage in ["", "nope", "[1]", '{"type":"Nope"}', "{" * 10]:
        await alice.send_text(garbage)
        assert (await alice.receive())["type"] == "Error"
    await alice.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await alice.receive())["code"] == "binary_frame"
    await alice.send(type="Offer", target="bob", data="sdp")
    assert (await bob.receive())["data"] == "sdp"


async def test_a_guest_signing_in_again_with_the_same_password_replaces_the_old_session():
    old = await signed_in("alice", "secret")
    bob = await signed_in("bob")
    new = await signed_in("alice", "secret")
    replaced = await old.receive()
    assert replaced["type"] == "SessionReplaced"
    assert await old.receive_close() == 4001
    await bob.send(type="Offer", target="alice", data="sdp")
    assert (await new.receive())["data"] == "sdp"
    assert await old.receive_nothing()


async def test_the_apps_reconnect_without_password_replaces_a_half_open_session():
    old = await signed_in("alice")
    new = await signed_in("alice")
    assert (await old.receive())["type"] == "SessionReplaced"
    bob = await signed_in("bob")
    await bob.send(type="StartConnection", target="alice")
    assert (await new.receive())["type"] == "StartConnection"


async def test_a_guest_name_claimed_with_a_password_is_taken_for_other_passwords():
    holder = await signed_in("alice", "secret")
    bob = await signed_in("bob")
    for password in [None, "wrong"]:
        intruder = await Peer.connect()
        reply = await intruder.sign_in("alice", password)
        assert reply["code"] == "username_taken"
    await bob.send(type="Offer", target="alice", data="sdp")
    assert (await holder.receive())["username"] == "bob"


async def test_an_account_name_needs_the_accounts_password():
    from asgiref.sync import sync_to_async

    await sync_to_async(User.objects.create_user)("alice", password="correct horse")
    for password in [None, "wrong"]:
        peer = await Peer.connect()
        assert (await peer.sign_in("alice", password))["code"] == "wrong_credentials"
    peer = await Peer.connect()
    reply = await peer.sign_in("alice", "correct horse")
    assert reply["type"] == "SignedIn"
    assert reply["data"]["guest"] is False


async def test_the_right_account_password_replaces_the_existing_session():
    from asgiref.sync import sync_to_async

    await sync_to_async(User.objects.create_user)("alice", password="correct horse")
    old = await signed_in("alice", "correct horse")
    await signed_in("alice", "correct horse")
    assert (await old.receive())["type"] == "SessionReplaced"
    assert await old.receive_close() == 4001


async def test_an_inactive_account_cannot_sign_in():
    from asgiref.sync import sync_to_async

    await sync_to_async(User.objects.create_user)(
        "alice", password="correct horse", is_active=False
    )
    peer = await Peer.connect()
    assert (await peer.sign_in("alice", "correct horse"))["code"] == "wrong_credentials"


async def test_guests_can_be_turned_off(settings):
    settings.SIGNALING_ALLOW_GUESTS = False
    peer = await Peer.connect()
    assert (await peer.sign_in("guest"))["code"] == "guests_disabled"


async def test_peers_that_exchanged_signaling_are_told_when_one_leaves():
    alice, bob, carol = [await signed_in(name) for name in ("alice", "bob", "carol")]
    await alice.send(type="StartConnection", target="bob")
    await bob.receive()
    await alice.close()
    assert await bob.receive() == {
        "type": "PeerLeft",
        "username": "alice",
        "target": "bob",
        "data": {"reason": "disconnected"},
    }
    assert await carol.receive_nothing()


async def test_the_receiver_of_a_relay_is_a_peer_too():
    alice, bob = await signed_in("alice"), await signed_in("bob")
    await alice.send(type="Offer", target="bob", data="sdp")
    await bob.receive()
    await bob.close()
    assert (await alice.receive())["type"] == "PeerLeft"


async def test_a_live_session_row_lives_exactly_as_long_as_the_connection():
    alice = await Peer.connect(headers=[(b"user-agent", b"okhttp/4 <b>")])
    await alice.sign_in("alice")
    await wait_for(lambda: _exists(username="alice"))
    row = await _get(username="alice")
    assert row.user_agent == "okhttp/4 <b>"
    assert row.client_address == "127.0.0.1"
    assert row.account_id is None
    await alice.close()
    await wait_for(lambda: _absent(username="alice"))


async def test_a_takeover_leaves_one_row_for_the_name():
    # Keep references: a collected communicator cancels its connection.
    sessions = [await signed_in("alice"), await signed_in("alice")]
    assert (await sessions[0].receive())["type"] == "SessionReplaced"
    await asyncio.sleep(0.3)
    from asgiref.sync import sync_to_async

    rows = await sync_to_async(list)(LiveSession.objects.values_list("channel_name"))
    assert rows == [(await registry.lookup("alice"),)]


async def test_an_administrator_can_disconnect_a_session():
    from asgiref.sync import sync_to_async

    alice = await signed_in("alice")
    await wait_for(lambda: _exists(username="alice"))
    row = await _get(username="alice")
    await sync_to_async(live_sessions_disconnect)([row.channel_name], reason="Bye")
    error = await alice.receive()
    assert (error["type"], error["code"], error["data"]) == (
        "Error",
        "disconnected_by_admin",
        "Bye",
    )
    assert await alice.receive_close() == 4002
    assert await registry.lookup("alice") is None


async def _exists(**filters) -> bool:
    return await session_count(**filters) > 0


async def _absent(**filters) -> bool:
    return await session_count(**filters) == 0


async def _get(**filters) -> LiveSession:
    from asgiref.sync import sync_to_async

    return await sync_to_async(LiveSession.objects.get)(**filters)


async def test_a_repeated_error_is_logged_once_per_kind_and_answered_every_time(caplog):
    caplog.set_level("DEBUG", logger="signaling.ws.consumers")
    peer = await Peer.connect()
    for _ in range(3):
        await peer.send_text("not json")
        assert (await peer.receive())["type"] == "Error"
    await peer.send(type="Offer", target="nobody", data="sdp")
    assert (await peer.receive())["code"] == "not_signed_in"
    errors = [r for r in caplog.records if r.getMessage().startswith("error ")]
    assert [r.levelname for r in errors] == ["INFO", "DEBUG", "DEBUG", "INFO"]
    await peer.close()


async def test_a_peer_whose_name_is_released_is_not_sent_the_leave():
    # A session releases its name as it ends; a message sent to its channel
    # after that is read by nobody and waits out the layer's expiry (with
    # thousands of short sessions, megabytes: tests/end_to_end/test_leaks.py). Here
    # bob's name is released while his consumer still reads its channel, so
    # a message sent there would reach his client.
    from signaling.presence.registry import registry

    alice, bob = await signed_in("alice"), await signed_in("bob")
    await alice.send(type="Offer", target="bob", data="sdp")
    await bob.receive()
    await registry.release(username="bob", channel_name=await registry.lookup("bob"))
    await alice.close()
    assert await bob.receive_nothing()


async def test_a_relay_the_layer_delivers_twice_reaches_the_client_once(monkeypatch):
    """Redis delivers at least once across a failover; the client sees each
    relay once, and later relays from the same sender still arrive."""
    from channels.layers import get_channel_layer

    # The in-memory layer as a layer that may repeat itself, like Redis.
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "delivers_once", False)
    alice, bob = await signed_in("alice"), await signed_in("bob")
    bob_channel = await registry.lookup("bob")
    await alice.send(type="Offer", target="bob", data="first")
    first = await bob.receive()
    alice_channel = await registry.lookup("alice")
    again = {
        "type": "signal.relay",
        "frame": '{"type":"Offer","username":"alice","target":"bob","data":"first"}',
        "sender": "alice",
        "sender_channel": alice_channel,
        "target": "bob",
        "seq": 0,
    }
    await layer.send(bob_channel, again)
    assert await bob.receive_nothing()
    await alice.send(type="Answer", target="bob", data="second")
    assert (await bob.receive())["data"] == "second"
    assert first["data"] == "first"


async def test_a_draining_instance_sends_newcomers_and_sign_ins_elsewhere(monkeypatch):
    from signaling.ws import shutdown

    waiting = await Peer.connect()
    monkeypatch.setattr(shutdown, "_draining", True)
    newcomer = await Peer.connect()
    frame = await newcomer.receive()
    assert frame["type"] == "Reconnect"
    assert frame["data"] == {"reason": "server_stopping"}
    assert await newcomer.receive_close() == 4003
    # Connected before the drain, signing in during it: no name is claimed.
    await waiting.send(type="SignIn", username="late-carol")
    assert (await waiting.receive())["type"] == "Reconnect"
    assert await waiting.receive_close() == 4003
    assert await registry.lookup("late-carol") is None
