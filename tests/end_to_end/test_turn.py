"""TURN credentials the server issues work on a real coturn, and only those.

A real Daphne hands out credentials minted with the secret it shares with a
real coturn (``use-auth-secret``); real aiortc peers restricted to relayed
candidates connect through that coturn with them. Expired, forged and
re-targeted credentials are refused by coturn itself.
"""

import asyncio
import hashlib
import json
import random
import time

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol, create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from signaling.core.ice import turn_rest_credential
from tests.clients import Client
from tests.end_to_end.test_webrtc_peers import assert_app_frame_shapes
from tests.peers import FileReceiver, Peer, send_file

ONE_MIB = 1024 * 1024


def relay_only(reply: dict) -> RTCConfiguration:
    """The peer connection settings a browser would make from SignedIn."""
    servers = [
        RTCIceServer(
            urls=entry["urls"],
            username=entry.get("username"),
            credential=entry.get("credential"),
        )
        for entry in reply["data"]["iceServers"]
    ]
    return RTCConfiguration(
        iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY
    )


async def issued_turn(server, name: str) -> tuple[Client, dict]:
    """Sign ``name`` in and return the TURN entry of its SignedIn frame."""
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in(name)
    assert reply["type"] == "SignedIn", reply
    (turn,) = [e for e in reply["data"]["iceServers"] if "username" in e]
    return client, turn


async def allocate(turn_server, username: str, credential: str) -> tuple[str, int]:
    """Ask coturn for a relay; return its address or raise TransactionFailed."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, turn_server.address, username, credential
        ),
        5,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def assert_refused(turn_server, username: str, credential: str) -> None:
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(turn_server, username, credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


@pytest.fixture
def turn_signaling(start_server, turn_server):
    def start(**env):
        return start_server(
            SIGNALING_TURN_URLS=turn_server.url,
            SIGNALING_TURN_SECRET=turn_server.secret,
            **env,
        )

    return start


async def test_relay_only_peers_transfer_a_file_through_coturn_with_issued_credentials(
    turn_signaling, turn_server
):
    server = turn_signaling()
    alice = await Peer.sign_in(server.ws_url, "alice", configuration=relay_only)
    bob = await Peer.sign_in(server.ws_url, "bob", configuration=relay_only)
    try:
        started = time.perf_counter()
        await alice.request("bob")
        assert (await bob.next_event())["type"] == "StartConnection"
        await bob.accept("alice")
        bob_channel, alice_channel = await asyncio.gather(
            bob.open_channel(), alice.open_channel()
        )
        connected = time.perf_counter() - started
        receiver = FileReceiver(alice_channel)
        payload = random.Random(7).randbytes(ONE_MIB)

        started = time.perf_counter()
        await send_file(bob_channel, payload, name="relayed.bin")
        received = await receiver.next_file()
        seconds = time.perf_counter() - started

        assert received.sha256 == hashlib.sha256(payload).hexdigest()
        # Only relayed candidates were offered, so every byte went through
        # coturn; each names a relay address on the TURN server's host.
        for peer in (alice, bob):
            lines = [
                json.loads(frame["data"])["sdp"]
                for frame in peer.sent_frames
                if frame["type"] == "IceCandidates"
            ]
            assert lines and all(" typ relay " in line for line in lines), lines
        assert_app_frame_shapes(bob, alice)
        # coturn saw the users the signaling server vouched for.
        log = turn_server.log()
        assert ":alice>" in log and ":bob>" in log
        print(
            f"\nTURN relay: connected in {connected:.2f} s; 1 MiB in {seconds:.2f} s "
            f"({ONE_MIB / seconds / 1e6:.1f} MB/s)"
        )
    finally:
        await alice.close()
        await bob.close()


async def test_coturn_refuses_credentials_once_they_expire_and_accepts_the_pushed_ones(
    turn_signaling, turn_server
):
    server = turn_signaling(SIGNALING_TURN_CREDENTIAL_TTL_SECONDS="2")
    client, turn = await issued_turn(server, "alice")
    expiry = int(turn["username"].split(":")[0])
    # Valid now.
    await allocate(turn_server, turn["username"], turn["credential"])
    # The server pushes fresh ones before these expire (80 % of 2 s).
    pushed = await client.receive_json(timeout=4)
    assert pushed["type"] == "IceServers"
    (fresh,) = pushed["data"]["iceServers"]
    assert fresh["username"] != turn["username"]
    # Once the expiry has passed, coturn refuses the old ones.
    await asyncio.sleep(max(0.0, expiry + 1.1 - time.time()))
    await assert_refused(turn_server, turn["username"], turn["credential"])
    await client.send_json({"type": "GetIceServers"})
    (asked,) = (await client.receive_json())["data"]["iceServers"]
    await allocate(turn_server, asked["username"], asked["credential"])
    await client.close()


async def test_coturn_refuses_forged_and_retargeted_credentials(
    turn_signaling, turn_server
):
    server = turn_signaling()
    client, turn = await issued_turn(server, "alice")
    expiry, _, name = turn["username"].partition(":")
    await allocate(turn_server, turn["username"], turn["credential"])
    # Alice's credential under another user's name.
    await assert_refused(turn_server, f"{expiry}:bob", turn["credential"])
    # A later expiry with the same credential.
    later = f"{int(expiry) + 86400}:{name}"
    await assert_refused(turn_server, later, turn["credential"])
    # Credentials minted with a guessed secret.
    await assert_refused(
        turn_server, later, turn_rest_credential("not-the-secret", later)
    )
    # No expiry at all.
    await assert_refused(turn_server, name, turn["credential"])
    await client.close()


async def test_names_coturn_would_silently_drop_still_get_working_credentials(
    turn_signaling, turn_server
):
    # coturn ignores (no answer at all) usernames with spaces or quotes.
    server = turn_signaling()
    for name in ['Jo "the" Doe', "名前 OR 1=1", "back\\slash"]:
        client, turn = await issued_turn(server, name)
        await allocate(turn_server, turn["username"], turn["credential"])
        await client.close()


async def test_an_allocation_made_in_time_outlives_its_credentials(
    turn_signaling, turn_server
):
    # So a transfer relayed through coturn does not break when the
    # credentials it started with expire; only new allocations need fresh ones.
    server = turn_signaling(SIGNALING_TURN_CREDENTIAL_TTL_SECONDS="1")
    client, turn = await issued_turn(server, "alice")
    expiry = int(turn["username"].split(":")[0])
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            turn_server.address,
            username=turn["username"],
            password=turn["credential"],
            lifetime=600,
            channel_refresh_time=500,
        ),
        remote_addr=turn_server.address,
    )
    try:
        await asyncio.wait_for(protocol.connect(), 5)
        await asyncio.sleep(max(0.0, expiry + 1.1 - time.time()))
        await assert_refused(turn_server, turn["username"], turn["credential"])
        refresh = stun.Message(
            message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST
        )
        refresh.attributes["LIFETIME"] = 600
        response, _ = await asyncio.wait_for(protocol.request_with_retry(refresh), 5)
        assert response.attributes["LIFETIME"] == 600
    finally:
        await asyncio.wait_for(protocol.delete(), 5)
        transport.close()
        await client.close()
