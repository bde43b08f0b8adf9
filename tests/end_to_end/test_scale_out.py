"""Several real Daphne instances sharing one real Redis and one database."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis
import websockets

from tests.clients import Client
from tests.servers import ROOT, base_environment

RELAY_TYPES = ["StartConnection", "Offer", "Answer", "IceCandidates", "DeclineConnection"]


def live_usernames(database_url: str) -> list[str]:
    query = "SELECT username FROM signaling_livesession ORDER BY username"
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return [row[0] for row in connection.execute(query)]
    import psycopg

    with psycopg.connect(database_url) as connection:
        return [row[0] for row in connection.execute(query)]


def live_session(database_url: str, username: str) -> tuple[str, int] | None:
    """The channel and server PID of ``username``'s admin row, if any."""
    query = (
        "SELECT s.channel_name, p.pid FROM signaling_livesession s "
        "JOIN signaling_serverprocess p ON p.name = s.process_id WHERE s.username = %s"
    )
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            rows = list(connection.execute(query.replace("%s", "?"), (username,)))
    else:
        import psycopg

        with psycopg.connect(database_url) as connection:
            rows = list(connection.execute(query, (username,)))
    return tuple(rows[0]) if rows else None


async def eventually(check, *, timeout: float, interval: float = 0.1):
    """Poll ``check`` until it returns truthy; return the seconds it took."""
    started = time.monotonic()
    while True:
        if await asyncio.to_thread(check):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(interval)


async def signed_in(server, username, password=None) -> Client:
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in(username, password)
    assert reply["type"] == "SignedIn", reply
    return client


@pytest.mark.parametrize("relay_type", RELAY_TYPES)
async def test_every_relay_type_crosses_instances(instances, relay_type):
    a, b = instances()
    alice = await signed_in(a, f"alice-{relay_type}")
    bob = await signed_in(b, f"bob-{relay_type}")
    await alice.send_json({"type": relay_type, "target": f"bob-{relay_type}", "data": "x"})
    frame = await bob.receive_json()
    assert (frame["type"], frame["username"]) == (relay_type, f"alice-{relay_type}")
    await bob.send_json({"type": relay_type, "target": f"alice-{relay_type}", "data": "y"})
    assert (await alice.receive_json())["username"] == f"bob-{relay_type}"


async def test_offline_targets_peer_left_and_takeover_work_across_instances(instances):
    a, b = instances()
    alice = await signed_in(a, "x-alice")
    bob = await signed_in(b, "x-bob")
    await alice.send_json({"type": "Offer", "target": "nobody", "data": "x"})
    assert (await alice.receive_json())["code"] == "target_not_found"

    await alice.send_json({"type": "StartConnection", "target": "x-bob"})
    await bob.receive_json()
    # bob signs in again on instance A: the session on B is replaced.
    new_bob = await signed_in(a, "x-bob")
    assert (await bob.receive_json())["type"] == "SessionReplaced"
    assert await bob.wait_closed() == 4001
    assert (await alice.receive_json())["type"] == "PeerLeft"
    await alice.send_json({"type": "Offer", "target": "x-bob", "data": "again"})
    assert (await new_bob.receive_json())["data"] == "again"


async def test_an_administrator_disconnects_a_session_on_another_instance(
    instances, redis_url, shared_database_url
):
    a, b = instances()
    alice = await signed_in(a, "admin-target")
    await eventually(
        lambda: "admin-target" in live_usernames(shared_database_url), timeout=5
    )
    # The admin action's code path, run by another process (as instance B's
    # admin page would): it finds the row and sends through Redis.
    script = (
        "from signaling.models import LiveSession;"
        "from signaling.presence.live_sessions import live_sessions_disconnect;"
        "row = LiveSession.objects.get(username='admin-target');"
        "live_sessions_disconnect([row.channel_name], reason='Bye')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=base_environment(DATABASE_URL=shared_database_url, REDIS_URL=redis_url),
        check=True,
        timeout=60,
    )
    assert (await alice.receive_json())["code"] == "disconnected_by_admin"
    assert await alice.wait_closed() == 4002


async def test_fifty_simultaneous_claims_of_one_name_leave_exactly_one_holder(
    instances, redis_url, shared_database_url
):
    a, b = instances()
    clients = [
        await Client.connect((a if n % 2 else b).ws_url) for n in range(50)
    ]
    # Each claims the guest name with its own password: exactly one wins.
    await asyncio.gather(
        *(
            client.send_json({"type": "SignIn", "username": "race", "data": f"pw{n}"})
            for n, client in enumerate(clients)
        )
    )
    replies = await asyncio.gather(*(client.receive_json() for client in clients))
    winners = [reply for reply in replies if reply["type"] == "SignedIn"]
    assert len(winners) == 1
    assert {reply.get("code") for reply in replies if reply["type"] == "Error"} == {
        "username_taken"
    }
    assert redis.Redis.from_url(redis_url).exists("signaling:user:race") == 1
    await eventually(
        lambda: live_usernames(shared_database_url).count("race") == 1, timeout=5
    )


async def test_simultaneous_takeovers_with_the_right_password_end_with_one_live_session(
    instances,
):
    a, b = instances()
    clients = [await Client.connect((a if n % 2 else b).ws_url) for n in range(50)]
    await asyncio.gather(
        *(
            client.send_json({"type": "SignIn", "username": "crowd", "data": "same"})
            for client in clients
        )
    )
    # Wait for the event, not for time: every claim but the last is replaced
    # (closed 4001) once the crowd settles.
    deadline = time.monotonic() + 15
    while sum(client.connection.close_code is None for client in clients) > 1:
        assert time.monotonic() < deadline, "takeovers did not settle in 15 s"
        await asyncio.sleep(0.05)
    open_clients = []
    for client in clients:
        frames = []
        while True:
            try:
                frames.append(json.loads(await client.receive_text(timeout=0.05)))
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                break
        if client.connection.close_code is None:
            open_clients.append((client, frames))
    assert len(open_clients) == 1
    survivor, frames = open_clients[0]
    assert frames[-1]["type"] == "SignedIn"
    peer = await signed_in(a, "crowd-peer")
    await peer.send_json({"type": "Offer", "target": "crowd", "data": "hi"})
    assert (await survivor.receive_json())["data"] == "hi"


async def test_a_killed_instance_leaves_no_silence_and_no_stale_sessions(
    instances, shared_database_url
):
    a, b = instances()
    doomed = await signed_in(a, "doomed")
    survivor_1 = await signed_in(b, "survivor-1")
    survivor_2 = await signed_in(b, "survivor-2")
    await eventually(lambda: "doomed" in live_usernames(shared_database_url), timeout=5)
    a.signal(signal.SIGKILL)
    killed_at = time.monotonic()

    # A relay sent at the moment of the kill is answered, never silent:
    # bounced as an Error, or (if the dying process had taken it) PeerLeft.
    await survivor_1.send_json({"type": "Offer", "target": "doomed", "data": "x"})
    reply = await survivor_1.receive_json(timeout=5)
    assert reply["type"] in {"Error", "PeerLeft"}, reply
    told_after = time.monotonic() - killed_at
    # Relays after that get the original's Error at once.
    while True:
        await survivor_1.send_json({"type": "Offer", "target": "doomed", "data": "x"})
        reply = await survivor_1.receive_json(timeout=5)
        if reply.get("code") == "target_not_found":
            break
        assert reply["type"] in {"Error", "PeerLeft"}, reply
    error_after = time.monotonic() - killed_at
    assert error_after < 5

    # Users on the surviving instance lose nothing.
    for seq in range(50):
        await survivor_1.send_json({"type": "IceCandidates", "target": "survivor-2", "data": str(seq)})
    assert [(await survivor_2.receive_json())["data"] for _ in range(50)] == [
        str(seq) for seq in range(50)
    ]
    await eventually(
        lambda: "doomed" not in live_usernames(shared_database_url), timeout=25
    )
    swept_after = time.monotonic() - killed_at
    assert swept_after < 20
    print(
        f"kill -9: sender told after {told_after:.2f}s, relays refused after "
        f"{error_after:.2f}s, admin rows swept after {swept_after:.1f}s"
    )
    del doomed


async def test_a_stopping_instance_tells_its_clients_to_reconnect(
    instances, shared_database_url
):
    a, b = instances()
    leaving = await signed_in(a, "leaving")
    staying = await signed_in(b, "staying")
    await eventually(lambda: "leaving" in live_usernames(shared_database_url), timeout=5)
    a.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    frame = await leaving.receive_json(timeout=5)
    assert frame["type"] == "Reconnect"
    assert await leaving.wait_closed() == 4003
    await eventually(
        lambda: "leaving" not in live_usernames(shared_database_url), timeout=2
    )
    a.process.wait(timeout=10)
    print(f"SIGTERM: process exited after {time.monotonic() - stopped_at:.2f}s")
    # Its user is offline at once for everybody else, and can come back on B.
    await staying.send_json({"type": "Offer", "target": "leaving", "data": "x"})
    assert (await staying.receive_json())["code"] == "target_not_found"
    back = await signed_in(b, "leaving")
    await staying.send_json({"type": "Offer", "target": "leaving", "data": "x"})
    assert (await back.receive_json())["data"] == "x"


def healthz_status(server) -> int:
    try:
        with urllib.request.urlopen(server.http_url + "/healthz", timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_a_redis_outage_gives_errors_and_relaying_recovers(
    start_server, redis_server, shared_database_url
):
    a, b = [
        start_server(database_url=shared_database_url, REDIS_URL=redis_server.url)
        for _ in range(2)
    ]
    alice = await signed_in(a, "outage-alice")
    bob = await signed_in(b, "outage-bob")
    redis_server.stop()
    stopped_at = time.monotonic()

    # Every relay attempt during the outage is answered, never silent.
    for _ in range(5):
        await alice.send_json({"type": "Offer", "target": "outage-bob", "data": "x"})
        reply = await alice.receive_json(timeout=15)
        assert reply["type"] == "Error"
        assert reply["code"] in {"relay_failed", "service_unavailable"}
    assert healthz_status(a) == 503
    assert await bob.receive_nothing(0.2)

    redis_server.start()
    back_at = time.monotonic()

    async def relaying_works() -> bool:
        await alice.send_json({"type": "Offer", "target": "outage-bob", "data": "back"})
        try:
            frame = await bob.receive_json(timeout=0.5)
        except asyncio.TimeoutError:
            frame = None
        # Drain the error the sender got while presence was being rebuilt.
        while True:
            try:
                reply = await alice.receive_json(timeout=0.05)
            except asyncio.TimeoutError:
                break
            assert reply["type"] == "Error"
        return bool(frame and frame["data"] == "back")

    while not await relaying_works():
        assert time.monotonic() - back_at < 10, "relaying did not recover in 10 s"
    recovered = time.monotonic() - back_at
    await bob.send_json({"type": "Answer", "target": "outage-alice", "data": "ok"})
    assert (await alice.receive_json())["data"] == "ok"
    assert healthz_status(a) == 200
    for server in (a, b):
        assert "Exception inside application" not in server.log()
    print(
        f"Redis outage: {back_at - stopped_at:.1f}s down, relaying again "
        f"{recovered:.2f}s after Redis returned"
    )


async def test_a_member_outliving_the_group_expiry_still_receives(
    instances, redis_url, shared_database_url
):
    a, b = instances(
        SIGNALING_GROUP_EXPIRY_SECONDS="3",
        SIGNALING_GROUP_REFRESH_SECONDS="1",
        SIGNALING_HEARTBEAT_SECONDS="0.5",
    )
    bob = await signed_in(b, "long-bob")
    alice = await signed_in(a, "long-alice")
    await asyncio.sleep(8)
    await alice.send_json({"type": "Offer", "target": "long-bob", "data": "late"})
    assert (await bob.receive_json())["data"] == "late"
    # Addressed by name through the group, from another process.
    script = (
        "from asgiref.sync import async_to_sync;"
        "from channels.layers import get_channel_layer;"
        "from signaling.core.protocol import group_name;"
        "async_to_sync(get_channel_layer().group_send)(group_name('long-bob'),"
        "{'type': 'signal.relay', 'frame': '{\"by\":\"name\"}',"
        "'sender': 'server', 'sender_channel': ''})"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=base_environment(
            DATABASE_URL=shared_database_url,
            REDIS_URL=redis_url,
            SIGNALING_GROUP_EXPIRY_SECONDS="3",
        ),
        check=True,
        timeout=60,
    )
    assert await bob.receive_json() == {"by": "name"}


LOAD_PAIRS = 100
LOAD_SECONDS = 60
LOAD_INTERVAL_SECONDS = 0.2  # per pair: 500 relays/s across the cluster


@pytest.mark.slow
async def test_a_minute_of_relaying_across_instances_loses_nothing(instances):
    a, b = instances()
    pairs = []
    for n in range(LOAD_PAIRS):
        # Half the pairs send from A to B, half from B to A.
        home, away = (a, b) if n % 2 else (b, a)
        sender = await signed_in(home, f"load-sender-{n}")
        receiver = await signed_in(away, f"load-receiver-{n}")
        pairs.append((n, sender, receiver))
    sent = [0] * LOAD_PAIRS
    received: list[list[int]] = [[] for _ in range(LOAD_PAIRS)]
    latencies: list[float] = []
    deadline = time.monotonic() + LOAD_SECONDS

    async def send_loop(n, sender):
        while time.monotonic() < deadline:
            payload = {"pair": n, "seq": sent[n], "sent_at": time.time()}
            await sender.send_json(
                {"type": "IceCandidates", "target": f"load-receiver-{n}", "data": payload}
            )
            sent[n] += 1
            await asyncio.sleep(LOAD_INTERVAL_SECONDS)

    async def receive_loop(n, receiver):
        while True:
            try:
                frame = await receiver.receive_json(timeout=10)
            except asyncio.TimeoutError:
                return
            data = frame["data"]
            assert data["pair"] == n
            received[n].append(data["seq"])
            latencies.append(time.time() - data["sent_at"])
            if time.monotonic() > deadline and len(received[n]) >= sent[n]:
                return

    async def errors_loop(sender):
        # Any reply to a sender would be an Error: there must be none.
        try:
            frame = await sender.receive_json(timeout=LOAD_SECONDS + 15)
        except asyncio.TimeoutError:
            return None
        return frame

    senders = [send_loop(n, sender) for n, sender, _ in pairs]
    receivers = [receive_loop(n, receiver) for n, _, receiver in pairs]
    watchers = [asyncio.ensure_future(errors_loop(s)) for _, s, _ in pairs]
    await asyncio.gather(*senders, *receivers)
    for watcher in watchers:
        watcher.cancel()
    errors = [w.result() for w in watchers if w.done() and not w.cancelled()]
    assert [e for e in errors if e] == []

    total = sum(sent)
    lost = sum(sent[n] - len(set(received[n])) for n in range(LOAD_PAIRS))
    duplicated = sum(len(received[n]) - len(set(received[n])) for n in range(LOAD_PAIRS))
    reordered = sum(received[n] != sorted(received[n]) for n in range(LOAD_PAIRS))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"load: {total} relays in {LOAD_SECONDS}s across 2 instances, lost {lost}, "
        f"duplicated {duplicated}, pairs reordered {reordered}, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    assert (lost, duplicated, reordered) == (0, 0, 0)
    assert all(received[n] == list(range(sent[n])) for n in range(LOAD_PAIRS))


async def test_a_frozen_instance_never_leaves_a_name_live_twice(
    instances, redis_url, shared_database_url
):
    # Retried sign-ins below must not trip the guessing limits.
    a, b = instances(
        SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME="1000",
        SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS="1000",
    )
    old = await signed_in(a, "frozen-alice")
    watcher = await signed_in(b, "frozen-watcher")
    a.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        # A's liveness lapses (3 s TTL): the name is free for another sign-in.
        contender = await Client.connect(b.ws_url)
        while (reply := await contender.sign_in("frozen-alice"))["type"] != "SignedIn":
            assert reply["code"] == "username_taken", reply
            assert time.monotonic() - frozen_at < 10, "the name was never freed"
            await asyncio.sleep(0.1)
        new = contender
        await watcher.send_json({"type": "Offer", "target": "frozen-alice", "data": "b"})
        assert (await new.receive_json())["data"] == "b"
    finally:
        a.signal(signal.SIGCONT)
    # A wakes up, finds its claims gone and the name taken: its old session
    # is closed as replaced instead of living on beside the new one.
    frame = await old.receive_json(timeout=10)
    assert frame["type"] == "SessionReplaced"
    assert await old.wait_closed(timeout=5) == 4001
    holder = redis.Redis.from_url(redis_url).hget("signaling:user:frozen-alice", "channel")
    await watcher.send_json({"type": "Offer", "target": "frozen-alice", "data": "again"})
    assert (await new.receive_json())["data"] == "again"
    # The name's holder is the new session on B, as the admin shows it.
    await eventually(
        lambda: live_session(shared_database_url, "frozen-alice") == (holder.decode(), b.pid),
        timeout=5,
    )


async def test_five_hundred_clients_reconnecting_at_once_all_get_their_names_back(
    instances, redis_url
):
    a, b = instances(SIGNALING_MAX_CONNECTIONS_PER_ADDRESS="0")
    count = 500

    async def connect_and_sign_in(n):
        server = a if n % 2 else b
        client = await Client.connect(server.ws_url)
        reply = await client.sign_in(f"crowd-{n}")
        return client, reply

    first = await asyncio.gather(*(connect_and_sign_in(n) for n in range(count)))
    assert [r for _, r in first if r["type"] != "SignedIn"] == []
    # Every connection drops at once (network change), and every client
    # reconnects at once, half-open old sockets notwithstanding.
    for client, _ in first:
        client.connection.transport.abort()
    started = time.monotonic()
    second = await asyncio.gather(*(connect_and_sign_in(n) for n in range(count)))
    elapsed = time.monotonic() - started
    assert all(reply["type"] == "SignedIn" for _, reply in second)
    assert elapsed < 30
    names = redis.Redis.from_url(redis_url).keys("signaling:user:crowd-*")
    assert len(names) == count
    print(f"reconnect storm: {count} clients signed in again in {elapsed:.1f}s across 2 instances")
