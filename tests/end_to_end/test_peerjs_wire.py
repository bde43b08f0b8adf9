"""The PeerJS server protocol on the wire, against real Daphne processes
(and two of them sharing a real Redis)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request


from tests.clients import Client
from tests.servers import ROOT, base_environment, sqlite_copy

OFFER_PAYLOAD = {
    "sdp": {"type": "offer", "sdp": "v=0\r\n"},
    "type": "data",
    "connectionId": "dc_abc123",
    "metadata": {"hello": "world"},
    "label": "dc_abc123",
    "reliable": True,
    "serialization": "binary",
}


def peerjs_url(server, peer_id, token="token-1", key="peerjs") -> str:
    return f"ws://127.0.0.1:{server.port}/peerjs?key={key}&id={peer_id}&token={token}&version=1.5.5"


async def peer(server, peer_id, token="token-1") -> Client:
    """A PeerJS client that connected and got OPEN."""
    client = await Client.connect(peerjs_url(server, peer_id, token))
    assert await client.receive_json() == {"type": "OPEN"}
    return client


def http_get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def test_handshake_without_token_gets_error_then_close(server):
    client = await Client.connect(
        f"ws://127.0.0.1:{server.port}/peerjs?key=peerjs&id=alice"
    )
    assert await client.receive_json() == {
        "type": "ERROR",
        "payload": {"msg": "No id, token, or key supplied to websocket server"},
    }
    await client.wait_closed()


async def test_handshake_with_wrong_key_gets_error_then_close(server):
    client = await Client.connect(peerjs_url(server, "alice", key="nope"))
    assert await client.receive_json() == {
        "type": "ERROR",
        "payload": {"msg": "Invalid key provided"},
    }
    await client.wait_closed()


async def test_handshake_with_invalid_id_gets_error_then_close(server):
    client = await Client.connect(peerjs_url(server, "bad%21id"))
    reply = await client.receive_json()
    assert reply["type"] == "ERROR"
    await client.wait_closed()


async def test_offer_reaches_only_its_addressee_with_src_stamped(server):
    alice = await peer(server, "alice")
    bob = await peer(server, "bob")
    carol = await peer(server, "carol")
    await alice.send_json(
        {
            "type": "OFFER",
            "src": "carol",
            "dst": "bob",
            "payload": OFFER_PAYLOAD,
            "extra": "not forwarded",
        }
    )
    assert await bob.receive_json() == {
        "type": "OFFER",
        "src": "alice",
        "dst": "bob",
        "payload": OFFER_PAYLOAD,
    }
    assert await carol.receive_nothing()
    assert await alice.receive_nothing()
    for kind in ("ANSWER", "CANDIDATE", "LEAVE"):
        await bob.send_json({"type": kind, "dst": "alice", "payload": {"k": kind}})
        assert await alice.receive_json() == {
            "type": kind,
            "src": "bob",
            "dst": "alice",
            "payload": {"k": kind},
        }


async def test_heartbeat_unknown_and_bad_frames_are_ignored_and_socket_stays(server):
    alice = await peer(server, "alice")
    bob = await peer(server, "bob")
    for frame in (
        '{"type":"HEARTBEAT"}',
        "not json",
        "[1,2]",
        '{"type":"WHATEVER","dst":"bob"}',
        '{"type":"OFFER"}',
        '{"no":"type"}',
        b"\x00binary",
    ):
        await alice.send_raw(frame)
    assert await alice.receive_nothing()
    assert await bob.receive_nothing()
    await alice.send_json({"type": "CANDIDATE", "dst": "bob", "payload": {}})
    assert (await bob.receive_json())["src"] == "alice"


async def test_oversized_relay_is_answered_with_expire(server):
    alice = await peer(server, "alice")
    bob = await peer(server, "bob")
    huge = {"sdp": "x" * 200_000, "connectionId": "c1"}
    await alice.send_json({"type": "OFFER", "dst": "bob", "payload": huge})
    assert await alice.receive_json() == {
        "type": "EXPIRE",
        "src": "bob",
        "dst": "alice",
    }
    assert await bob.receive_nothing()


async def test_id_taken_under_another_token(server):
    alice = await peer(server, "alice", token="first")
    thief = await Client.connect(peerjs_url(server, "alice", token="second"))
    assert await thief.receive_json() == {
        "type": "ID-TAKEN",
        "payload": {"msg": "ID is taken"},
    }
    await thief.wait_closed()
    assert await alice.receive_nothing()


async def test_ten_takeover_attempts_at_once_all_get_id_taken_and_lock_nobody_out(server):
    # The PeerJS client suite's id-taken page does this; the default lockout
    # is five failed sign-ins per name.
    alice = await peer(server, "alice", token="first")
    thieves = await asyncio.gather(
        *(Client.connect(peerjs_url(server, "alice", token=f"t{n}")) for n in range(10))
    )
    replies = await asyncio.gather(*(thief.receive_json() for thief in thieves))
    assert [reply["type"] for reply in replies] == ["ID-TAKEN"] * 10
    # Her own reconnect (same token) still takes the id back.
    again = await peer(server, "alice", token="first")
    await alice.wait_closed()
    await again.close()


async def test_same_token_replaces_the_old_socket(server):
    old = await peer(server, "alice", token="same")
    bob = await peer(server, "bob")
    new = await peer(server, "alice", token="same")
    await old.wait_closed()
    await bob.send_json({"type": "CANDIDATE", "dst": "alice", "payload": {"n": 1}})
    assert (await new.receive_json())["payload"] == {"n": 1}


async def test_app_usernames_and_peerjs_ids_are_apart(server):
    alice = await peer(server, "alice")
    app = await Client.connect(server.ws_url)
    assert (await app.sign_in("alice"))["type"] == "SignedIn"
    await app.send_json({"type": "Offer", "target": "peerjs:alice", "data": "x"})
    assert (await app.receive_json())["code"] == "target_not_found"
    assert (await app.sign_in("peerjs:bob"))["code"] == "invalid_username"
    assert await alice.receive_nothing()


async def test_offline_queue_is_delivered_when_the_id_connects(server):
    alice = await peer(server, "alice")
    await alice.send_json({"type": "OFFER", "dst": "bob", "payload": OFFER_PAYLOAD})
    await alice.send_json({"type": "CANDIDATE", "dst": "bob", "payload": {"c": 1}})
    await alice.send_json({"type": "LEAVE", "dst": "bob"})
    await asyncio.sleep(0.5)
    bob = await peer(server, "bob")
    assert (await bob.receive_json())["type"] == "OFFER"
    assert await bob.receive_json() == {
        "type": "CANDIDATE",
        "src": "alice",
        "dst": "bob",
        "payload": {"c": 1},
    }
    # LEAVE is not kept; nothing expires once delivered.
    assert await bob.receive_nothing(timeout=0.5)
    assert await alice.receive_nothing(timeout=6)


async def test_each_sender_gets_one_expire_for_an_absent_id(server):
    alice = await peer(server, "alice")
    carol = await peer(server, "carol")
    started = time.monotonic()
    for n in range(3):
        await alice.send_json(
            {"type": "CANDIDATE", "dst": "nobody", "payload": {"n": n}}
        )
    await carol.send_json({"type": "OFFER", "dst": "nobody", "payload": OFFER_PAYLOAD})
    expire = {"type": "EXPIRE", "src": "nobody"}
    assert await alice.receive_json(timeout=8) == {**expire, "dst": "alice"}
    assert 4.5 < time.monotonic() - started < 7
    assert await carol.receive_json(timeout=3) == {**expire, "dst": "carol"}
    assert await alice.receive_nothing(timeout=1)
    # Expired frames are gone: a late arrival gets nothing.
    nobody = await peer(server, "nobody")
    assert await nobody.receive_nothing(timeout=0.5)


def test_http_id_and_peers_with_cors(start_server):
    closed = start_server()
    status, headers, body = http_get(closed.http_url + "/peerjs/id?ts=1")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert len(body.decode()) == 36
    status, headers, _ = http_get(closed.http_url + "/peerjs/peers")
    assert (status, headers["Access-Control-Allow-Origin"]) == (401, "*")
    # The app's own root still answers as the original server did.
    assert http_get(closed.http_url + "/")[0] == 200


async def test_discovery_lists_connected_ids(start_server):
    server = start_server(SIGNALING_PEERJS_DISCOVERY="1", SIGNALING_PEERJS_KEY="k2")
    alice = await Client.connect(peerjs_url(server, "alice", key="k2"))
    assert (await alice.receive_json())["type"] == "OPEN"
    status, _, body = await asyncio.to_thread(http_get, server.http_url + "/k2/peers")
    assert (status, json.loads(body)) == (200, ["alice"])


async def test_alive_timeout_closes_a_silent_socket(start_server):
    server = start_server(SIGNALING_PEERJS_ALIVE_TIMEOUT_SECONDS="1")
    silent = await peer(server, "silent")
    chatty = await peer(server, "chatty")
    for _ in range(4):
        await chatty.send_raw('{"type":"HEARTBEAT"}')
        await asyncio.sleep(0.4)
    await silent.wait_closed(timeout=3)
    assert await chatty.receive_nothing()


async def test_a_heartbeat_flood_is_refused_like_any_other(start_server):
    server = start_server(
        SIGNALING_FRAMES_PER_SECOND="5",
        SIGNALING_FRAME_BURST="5",
        SIGNALING_RATE_LIMIT_CLOSE_AFTER="3",
    )
    flooder = await peer(server, "flooder")
    for _ in range(40):
        await flooder.send_raw('{"type":"HEARTBEAT"}')
    assert await flooder.receive_json() == {
        "type": "ERROR",
        "payload": {"msg": "Too many messages"},
    }
    await flooder.wait_closed()


async def test_account_id_needs_the_account_password_as_token(
    start_server, migrated_sqlite, tmp_path
):
    database_url = sqlite_copy(migrated_sqlite, tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup();"
            "from django.contrib.auth.models import User;"
            "User.objects.create_user('owner', password='s3cret-pass')",
        ],
        cwd=ROOT,
        env=base_environment(DATABASE_URL=database_url),
        check=True,
    )
    server = start_server(database_url=database_url)
    wrong = await Client.connect(peerjs_url(server, "owner", token="guess"))
    assert await wrong.receive_json() == {
        "type": "ID-TAKEN",
        "payload": {"msg": "ID belongs to an account; the token must be its password"},
    }
    await wrong.wait_closed()
    owner = await peer(server, "owner", token="s3cret-pass")
    await owner.close()


async def test_peers_on_two_instances_reach_each_other(instances):
    a, b = instances()
    alice = await peer(a, "alice")
    bob = await peer(b, "bob")
    await alice.send_json({"type": "OFFER", "dst": "bob", "payload": OFFER_PAYLOAD})
    assert (await bob.receive_json())["src"] == "alice"
    thief = await Client.connect(peerjs_url(a, "bob", token="other"))
    assert (await thief.receive_json())["type"] == "ID-TAKEN"


async def test_same_token_reconnect_moves_to_another_instance(instances):
    a, b = instances()
    old = await peer(a, "alice", token="same")
    new = await peer(b, "alice", token="same")
    await old.wait_closed()
    bob = await peer(a, "bob")
    await bob.send_json({"type": "CANDIDATE", "dst": "alice", "payload": {"n": 2}})
    assert (await new.receive_json())["payload"] == {"n": 2}


async def test_offline_queue_and_expire_work_across_instances(instances):
    a, b = instances()
    alice = await peer(a, "alice")
    await alice.send_json({"type": "OFFER", "dst": "bob", "payload": OFFER_PAYLOAD})
    await asyncio.sleep(0.3)
    bob = await peer(b, "bob")
    assert (await bob.receive_json())["src"] == "alice"
    await alice.send_json({"type": "OFFER", "dst": "nobody", "payload": OFFER_PAYLOAD})
    assert await alice.receive_json(timeout=8) == {
        "type": "EXPIRE",
        "src": "nobody",
        "dst": "alice",
    }


async def test_metrics_count_peerjs_sign_ins_and_relays_under_their_protocol(start_server):
    server = start_server(SIGNALING_METRICS_TOKEN="peerjs-metrics")
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    thief = await Client.connect(peerjs_url(server, "alice", token="other"))
    assert (await thief.receive_json())["type"] == "ID-TAKEN"
    await alice.send_json({"type": "OFFER", "dst": "bob", "payload": OFFER_PAYLOAD})
    assert (await bob.receive_json())["type"] == "OFFER"
    request = urllib.request.Request(
        server.http_url + "/metrics", headers={"Authorization": "Bearer peerjs-metrics"}
    )

    def scrape() -> set[str]:
        with urllib.request.urlopen(request, timeout=5) as response:
            return set(response.read().decode().splitlines())

    lines = await asyncio.to_thread(scrape)
    assert {
        'signaling_sign_ins_total{outcome="ok",protocol="peerjs"} 2.0',
        'signaling_sign_ins_total{outcome="id_taken",protocol="peerjs"} 1.0',
        'signaling_relayed_frames_total{protocol="peerjs",type="OFFER"} 1.0',
        'signaling_relay_seconds_count{protocol="peerjs"} 1.0',
        'signaling_sign_ins_total{outcome="ok",protocol="app"} 0.0',
    } <= lines


def test_a_mount_path_answers_as_peerjs_server_does_and_root_stays_the_apps(start_server):
    server = start_server(SIGNALING_PEERJS_PATH="/myapp/")
    for url in (server.http_url + "/myapp", server.http_url + "/myapp/"):
        status, headers, body = http_get(url)
        assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")
        assert json.loads(body) == {
            "name": "PeerJS Server",
            "description": "A server side element to broker connections between PeerJS clients.",
            "website": "https://peerjs.com/",
        }
    status, _, body = http_get(server.http_url + "/")
    assert status == 200 and body.decode().startswith("Server is running")
    assert http_get(server.http_url + "/myapp/peerjs/id")[0] == 200
