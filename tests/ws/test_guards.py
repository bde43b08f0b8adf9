"""The abuse limits as a client meets them, in process."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from signaling.core.protocol import ProtocolError
from signaling.ws import guards
from tests.communicators import Peer, signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]


async def test_a_full_ice_trickle_passes_the_rate_limit():
    alice, bob = await signed_in("alice"), await signed_in("bob")
    await alice.send(type="Offer", target="bob", data="sdp")
    for n in range(60):
        await alice.send(type="IceCandidates", target="bob", data=f"candidate:{n}")
    frames = [await bob.receive() for _ in range(61)]
    assert [frame["data"] for frame in frames[1:]] == [
        f"candidate:{n}" for n in range(60)
    ]
    assert await alice.receive_nothing()


async def test_a_flood_is_refused_then_closed(settings):
    settings.SIGNALING_FRAME_BURST = 20
    settings.SIGNALING_FRAMES_PER_SECOND = 1
    settings.SIGNALING_RATE_LIMIT_CLOSE_AFTER = 5
    alice, bob = await signed_in("alice"), await signed_in("bob")
    for n in range(100):
        await alice.send(type="IceCandidates", target="bob", data=str(n))
    relayed = 0
    while True:
        try:
            await bob.receive(timeout=0.3)
        except asyncio.TimeoutError:
            break
        relayed += 1
    assert 0 < relayed <= 21
    errors = []
    while True:
        output = await alice.communicator.receive_output(1)
        if output["type"] == "websocket.close":
            break
        errors.append(output["text"])
    assert len(errors) == 5
    assert all('"code":"rate_limited"' in error for error in errors)
    assert output["code"] == 4008


async def test_a_socket_that_never_signs_in_is_closed_at_the_deadline(settings):
    settings.SIGNALING_SIGN_IN_TIMEOUT_SECONDS = 0.2
    lurker = await Peer.connect()
    error = await lurker.receive(timeout=2)
    assert error["code"] == "sign_in_timeout"
    assert await lurker.receive_close() == 4004


async def test_signing_in_in_time_cancels_the_deadline(settings):
    settings.SIGNALING_SIGN_IN_TIMEOUT_SECONDS = 0.2
    alice = await signed_in("alice")
    await asyncio.sleep(0.4)
    assert await alice.receive_nothing()


async def test_password_guessing_is_stopped_and_the_owner_gets_in_later(settings):
    settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME = 3
    settings.SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS = 0.5
    await sync_to_async(User.objects.create_user)("alice", password="correct horse")
    bystander = await signed_in("bob")
    guesser = await Peer.connect(client=("10.0.0.9", 1))
    codes = [(await guesser.sign_in("alice", f"guess{n}"))["code"] for n in range(5)]
    assert codes == ["wrong_credentials"] * 3 + ["too_many_attempts"] * 2
    owner = await Peer.connect(client=("10.0.0.10", 1))
    assert (await owner.sign_in("alice", "correct horse"))[
        "code"
    ] == "too_many_attempts"
    await asyncio.sleep(0.6)
    assert (await owner.sign_in("alice", "correct horse"))["type"] == "SignedIn"
    assert (await bystander.sign_in("bob"))["type"] == "SignedIn"


async def test_guessing_many_names_from_one_address_is_stopped(settings):
    settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS = 4
    await signed_in("held", "secret")
    guesser = await Peer.connect(client=("10.0.0.9", 1))
    codes = [(await guesser.sign_in("held", f"guess{n}"))["code"] for n in range(6)]
    assert codes == ["username_taken"] * 4 + ["too_many_attempts"] * 2


async def test_connections_over_the_per_address_cap_are_refused_explicitly(settings):
    settings.SIGNALING_MAX_CONNECTIONS_PER_ADDRESS = 2
    first = await Peer.connect(client=("10.0.0.1", 1))
    second = await Peer.connect(client=("10.0.0.1", 2))
    third = await Peer.connect(client=("10.0.0.1", 3))
    assert (await third.receive())["code"] == "too_many_connections"
    assert await third.receive_close() == 4009
    elsewhere = await Peer.connect(client=("10.0.0.2", 1))
    assert (await elsewhere.sign_in("carol"))["type"] == "SignedIn"
    await first.close()
    again = await Peer.connect(client=("10.0.0.1", 4))
    assert (await again.sign_in("dave"))["type"] == "SignedIn"
    # The connection admitted before the refusal still works.
    assert (await second.sign_in("erin"))["type"] == "SignedIn"
    await elsewhere.send(type="Offer", target="erin", data="hi")
    assert (await second.receive())["data"] == "hi"


async def test_connections_over_the_server_cap_are_refused_explicitly(settings):
    settings.SIGNALING_MAX_CONNECTIONS = 2
    alice, bob = await signed_in("alice"), await signed_in("bob")
    third = await Peer.connect(client=("10.0.0.2", 1))
    assert (await third.receive())["code"] == "server_full"
    assert await third.receive_close() == 4009
    # Those already connected are unaffected.
    await alice.send(type="Offer", target="bob", data="hi")
    assert (await bob.receive())["data"] == "hi"


def outcomes(attempts) -> list[str]:
    """Run guards.check_sign_in_attempts for each (name, address, password?)
    and return "ok" or the refusal's code for each."""
    found = []
    for username, address, with_password in attempts:
        try:
            guards.check_sign_in_attempts(
                username, address, with_password=with_password
            )
        except ProtocolError as error:
            found.append(error.code.value)
        else:
            found.append("ok")
    return found


def test_one_guesser_behind_a_shared_address_leaves_its_neighbours_signing_in(
    settings,
):
    settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS = 4
    nat = "100.64.0.1"  # RFC 6598 shared address space, as a carrier's NAT
    guards.sign_in_succeeded("alice", nat)
    for n in range(4):
        guards.sign_in_failed(f"victim{n}", nat)
    assert outcomes(
        [
            ("victim9", nat, True),  # the guesser's next name: refused
            ("dave", nat, True),  # an account never signed in from here
            ("alice", nat, True),  # signed in from here before
            ("carol", nat, False),  # a guest: no password, nothing guessed
            ("victim9", "198.51.100.7", True),  # elsewhere
        ]
    ) == ["too_many_attempts", "too_many_attempts", "ok", "ok", "ok"]


def test_the_per_name_limit_holds_for_familiar_and_guest_sign_ins_too(settings):
    settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME = 3
    guards.sign_in_succeeded("alice", "100.64.0.1")
    for address in ("100.64.0.1", "198.51.100.1", "203.0.113.1"):
        guards.sign_in_failed("alice", address)
    assert outcomes([("alice", "100.64.0.1", True), ("alice", "192.0.2.1", False)]) == [
        "too_many_attempts",
        "too_many_attempts",
    ]


def test_the_defaults_leave_room_for_a_shared_address(settings):
    """Values SECURITY.md argues for; a change there must change this."""
    from django.conf import settings as live

    assert live.SIGNALING_MAX_CONNECTIONS_PER_ADDRESS == 1000
    assert live.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS == 50
    assert live.SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME == 5
    assert live.SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS == 60


async def test_a_guesser_behind_a_shared_address_locks_out_only_new_password_sign_ins(
    settings,
):
    settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS = 3
    nat = "100.64.0.7"  # RFC 6598 shared address space, as a carrier's NAT
    await sync_to_async(User.objects.create_user)("dave", password="dave-secret")
    for n in range(3):
        holder = await Peer.connect(client=("198.51.100.1", n))
        assert (await holder.sign_in(f"held{n}", "right"))["type"] == "SignedIn"
    neighbour = await Peer.connect(client=(nat, 1))
    assert (await neighbour.sign_in("alice", "alice-pw"))["type"] == "SignedIn"
    await neighbour.close()
    guesser = await Peer.connect(client=(nat, 2))
    for n in range(3):
        assert (await guesser.sign_in(f"held{n}", "wrong"))["code"] == "username_taken"

    # Over the address's limit: a new password sign-in from the NAT waits...
    stranger = await Peer.connect(client=(nat, 3))
    reply = await stranger.sign_in("dave", "dave-secret")
    assert reply["code"] == "too_many_attempts"
    # ...while a user who signed in from there before, and a guest without
    # a password, still get in.
    neighbour = await Peer.connect(client=(nat, 4))
    assert (await neighbour.sign_in("alice", "alice-pw"))["type"] == "SignedIn"
    guest = await Peer.connect(client=(nat, 5))
    assert (await guest.sign_in("carol"))["type"] == "SignedIn"
    await guest.send(type="Offer", target="alice", data="hi")
    assert (await neighbour.receive())["data"] == "hi"
