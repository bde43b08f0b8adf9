"""Against a real Daphne process with real WebSocket clients."""

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.clients import Client
from tests.servers import DAPHNE, ROOT, base_environment, free_port

# What the Android app sends (anchors.md section 2): Gson omits null fields,
# SDP travels as a raw string and candidates as a JSON string.
APP_OFFER_SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=sctp-port:5000\r\n"
)
APP_ANSWER_SDP = APP_OFFER_SDP.replace("actpass", "active")


def app_candidate(n: int) -> str:
    return json.dumps(
        {
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "sdp": f"candidate:{n} 1 udp 2122260223 192.168.1.{n} 5{n}000 typ host",
            "serverUrl": "",
            "adapterType": "UNKNOWN",
        },
        separators=(",", ":"),
    )


async def test_the_android_apps_exact_frames_set_up_a_connection(server):
    alice = await Client.connect(server.ws_url)
    bob = await Client.connect(server.ws_url)
    await alice.send_raw('{"type":"SignIn","username":"alice"}')
    await bob.send_raw('{"type":"SignIn","username":"bob"}')
    assert (await alice.receive_json())["type"] == "SignedIn"
    assert (await bob.receive_json())["type"] == "SignedIn"

    await alice.send_raw(
        '{"type":"StartConnection","username":"alice","target":"bob"}'
    )
    assert await bob.receive_json() == {
        "type": "StartConnection",
        "username": "alice",
        "target": "bob",
    }
    # In the app the side that accepts sends the offer.
    await bob.send_json(
        {"type": "Offer", "username": "bob", "target": "alice", "data": APP_OFFER_SDP}
    )
    offer = await alice.receive_json()
    assert offer == {
        "type": "Offer",
        "username": "bob",
        "target": "alice",
        "data": APP_OFFER_SDP,
    }
    await alice.send_json(
        {"type": "Answer", "username": "alice", "target": "bob", "data": APP_ANSWER_SDP}
    )
    answer = await bob.receive_json()
    assert (answer["type"], answer["username"], answer["data"]) == (
        "Answer",
        "alice",
        APP_ANSWER_SDP,
    )
    for n in range(1, 5):
        await bob.send_json(
            {
                "type": "IceCandidates",
                "username": "bob",
                "target": "alice",
                "data": app_candidate(n),
            }
        )
        await alice.send_json(
            {
                "type": "IceCandidates",
                "username": "alice",
                "target": "bob",
                "data": app_candidate(n + 10),
            }
        )
    for n in range(1, 5):
        assert (await alice.receive_json())["data"] == app_candidate(n)
        assert (await bob.receive_json())["data"] == app_candidate(n + 10)
    assert "Exception inside application" not in server.log()


async def test_an_unknown_target_gets_the_originals_error_bytes(server):
    alice = await Client.connect(server.ws_url)
    await alice.sign_in("alice")
    await alice.send_raw(
        '{"type":"StartConnection","username":"alice","target":"nobody"}'
    )
    assert await alice.receive_text() == (
        '{"type":"Error","username":"server","target":"alice",'
        '"data":"Target user not found","code":"target_not_found"}'
    )


async def test_a_reconnect_is_reachable_while_the_old_socket_stays_open(server):
    old = await Client.connect(server.ws_url)
    await old.sign_in("alice")
    bob = await Client.connect(server.ws_url)
    await bob.sign_in("bob")
    # The app reconnects and signs in again; its old socket is half-open and
    # never reads again.
    new = await Client.connect(server.ws_url)
    assert (await new.sign_in("alice"))["type"] == "SignedIn"
    await bob.send_json({"type": "StartConnection", "target": "alice"})
    frame = await new.receive_json(timeout=1)
    assert (frame["type"], frame["username"]) == ("StartConnection", "bob")


async def test_garbage_on_one_socket_does_not_disturb_relaying_between_others(
    start_server,
):
    # The decoder is under test, not the rate limit (test_guards covers it).
    server = start_server(SIGNALING_FRAME_BURST="10000")
    attacker = await Client.connect(server.ws_url)
    await attacker.sign_in("mallory")
    bob = await Client.connect(server.ws_url)
    carol = await Client.connect(server.ws_url)
    await bob.sign_in("bob")
    await carol.sign_in("carol")
    garbage = [
        "",
        "not json",
        "[1,2]",
        '"x"',
        "{}",
        '{"type":"Nope"}',
        '{"type":"Offer","target":7}',
        '{"type":"SignIn","username":"\\u0000"}',
        "NaN",
        "9" * 5000,
        "[" * 5000,
        '{"type":"Offer","username":"bob","target":"carol","data":"spoof"}',
        b"\x00binary",
    ]
    rounds = 20

    async def attack():
        for _ in range(rounds):
            for frame in garbage:
                await attacker.send_raw(frame)

    async def relay():
        for seq in range(200):
            await bob.send_json({"type": "IceCandidates", "target": "carol", "data": str(seq)})

    await asyncio.gather(attack(), relay())
    received = [(await carol.receive_json())["data"] for _ in range(200)]
    assert received == [str(seq) for seq in range(200)]
    errors = [await attacker.receive_json() for _ in range(rounds * len(garbage))]
    assert all(error["type"] == "Error" for error in errors)
    assert await carol.receive_nothing()
    log = server.log()
    assert "Traceback" not in log and "Exception inside application" not in log


async def test_a_dead_channel_layer_gives_errors_not_crashes(start_server):
    server = start_server(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(server.http_url + "/healthz", timeout=10)
    assert raised.value.code == 503
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in("alice")
    assert (reply["type"], reply["code"]) == ("Error", "service_unavailable")
    assert "Exception inside application" not in server.log()


def test_the_server_refuses_to_start_without_a_secret_key():
    env = base_environment(DATABASE_URL="sqlite:///:memory:")
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run(
        [str(DAPHNE), "-p", str(free_port()), "signaling_site.asgi:application"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_manage_py_check_passes_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=base_environment(DATABASE_URL="sqlite:///:memory:"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
