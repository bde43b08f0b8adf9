"""A Redis killed and started again empty, under two real Daphne instances.

Ten cross-instance pairs and a guest holding her name with a password ride
out repeated restarts: every session comes back, no name changes hands, and
nobody is told that a peer left who did not.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
import redis
import websockets

from tests.clients import Client

PAIRS = 10
RESTARTS = 10
GUEST = "restart-guest"
GUEST_PASSWORD = "her-own-password"
RECOVERY_LIMIT_SECONDS = 10


class Watched:
    """A signed-in client whose every frame is kept, so that a PeerLeft
    arriving at any moment is seen."""

    def __init__(self, client: Client, username: str) -> None:
        self.client = client
        self.username = username
        self.frames: list[dict] = []
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.client.connection:
                frame = json.loads(text)
                self.frames.append(frame)
                await self.inbox.put(frame)
        except websockets.ConnectionClosed:
            pass

    async def next_relay(self, timeout: float) -> dict | None:
        """The next relayed frame, skipping Errors; None when none came."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                return None
            if frame["type"] != "Error":
                return frame
        return None

    def drain(self) -> list[dict]:
        frames = []
        while not self.inbox.empty():
            frames.append(self.inbox.get_nowait())
        return frames

    def peer_left_frames(self) -> list[dict]:
        return [frame for frame in self.frames if frame["type"] == "PeerLeft"]

    @property
    def open(self) -> bool:
        return not self.reader.done()


async def watched(server, username: str, password: str | None = None) -> Watched:
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in(username, password)
    assert reply["type"] == "SignedIn", reply
    return Watched(client, username)


@pytest.fixture
def two_instances(redis_server, start_server, shared_database_url):
    # Redis first: it is then stopped last, after the instances have
    # released their claims and rows.
    # Ten refused guesses of the guest's name in a minute are the test, not
    # an attack: the per-name lockout would answer too_many_attempts.
    return [
        start_server(
            database_url=shared_database_url,
            REDIS_URL=redis_server.url,
            SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME="1000",
            SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS="1000",
        )
        for _ in range(2)
    ]


async def relay_round(pairs, tag: str, timeout: float) -> bool:
    """Every pair exchanges an Offer and an Answer; True when all arrive."""
    for sender, receiver in pairs:
        await sender.client.send_json(
            {"type": "Offer", "target": receiver.username, "data": tag}
        )
    for sender, receiver in pairs:
        frame = await receiver.next_relay(timeout)
        if frame is None or frame.get("data") != tag:
            return False
        await receiver.client.send_json(
            {"type": "Answer", "target": sender.username, "data": tag}
        )
    for sender, receiver in pairs:
        frame = await sender.next_relay(timeout)
        if frame is None or frame.get("data") != tag:
            return False
    return True


async def guest_name_is_refused_without_password(server) -> None:
    """Tries her name without her password until the server gives a final
    answer (service_unavailable only says "not now"); it must be a refusal.
    """
    deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
    intruder = await Client.connect(server.ws_url)
    try:
        while True:
            # The claim may wait for her instance to re-claim her name: the
            # answer then comes within the recovery window.
            reply = await intruder.sign_in(GUEST, None, timeout=15)
            if reply.get("code") != "service_unavailable":
                break
            assert time.monotonic() < deadline, "no answer but service_unavailable"
            await asyncio.sleep(0.05)
    finally:
        await intruder.close()
    assert reply["type"] == "Error", reply
    assert reply["code"] == "username_taken", reply


async def run_restarts(
    two_instances, redis_server, *, outage_seconds: float, relay_during_outage: bool
) -> list[float]:
    a, b = two_instances
    pairs = []
    for index in range(PAIRS):
        left = await watched(a, f"restart-a{index}")
        right = await watched(b, f"restart-b{index}")
        pairs.append((left, right))
    guest = await watched(a, GUEST, GUEST_PASSWORD)
    everyone = [client for pair in pairs for client in pair] + [guest]
    assert await relay_round(pairs, "before", timeout=5)
    inspect = redis.Redis(port=redis_server.port)
    recoveries = []

    for restart in range(RESTARTS):
        redis_server.kill()
        if relay_during_outage:
            sender, receiver = pairs[0]
            await sender.client.send_json(
                {"type": "Offer", "target": receiver.username, "data": "lost"}
            )
            # Answered, never silent.
            reply = await asyncio.wait_for(sender.inbox.get(), 15)
            assert reply["type"] == "Error", reply
            assert reply["code"] in {"service_unavailable", "relay_failed"}, reply
        await asyncio.sleep(outage_seconds)
        redis_server.start()
        back_at = time.monotonic()
        # At once, before her instance can have re-claimed her name.
        await guest_name_is_refused_without_password(b)

        tag = f"after-{restart}"
        while not await relay_round(pairs, tag, timeout=0.5):
            assert time.monotonic() - back_at < RECOVERY_LIMIT_SECONDS, (
                f"restart {restart}: relaying did not recover in "
                f"{RECOVERY_LIMIT_SECONDS} s"
            )
            for client in everyone:
                client.drain()
        recoveries.append(time.monotonic() - back_at)

        holders = {
            client.username: inspect.hget(
                f"signaling:user:{client.username}", "process"
            )
            for client in everyone
        }
        assert all(holders.values()), f"restart {restart}: unclaimed {holders}"
        await guest_name_is_refused_without_password(b)
        await guest_name_is_refused_without_password(a)
        assert all(client.open for client in everyone)
        assert [client.peer_left_frames() for client in everyone] == [[]] * len(
            everyone
        )
        for client in everyone:
            client.drain()

    # Her own reconnect with her password still takes her name over.
    again = await Client.connect(b.ws_url)
    reply = await again.sign_in(GUEST, GUEST_PASSWORD)
    assert reply["type"] == "SignedIn", reply
    await asyncio.wait_for(guest.reader, 5)
    assert guest.frames[-1]["type"] == "SessionReplaced"
    assert guest.client.connection.close_code == 4001
    for server in (a, b):
        assert "Exception inside application" not in server.log()
    return recoveries


@pytest.mark.slow
async def test_every_session_survives_ten_redis_restarts(two_instances, redis_server):
    recoveries = await run_restarts(
        two_instances, redis_server, outage_seconds=2, relay_during_outage=True
    )
    print("relaying again after", ", ".join(f"{s:.2f}s" for s in recoveries))


@pytest.mark.slow
async def test_every_session_survives_restarts_that_leave_pooled_connections_stale(
    two_instances, redis_server
):
    # Back before either instance sends a command: every pooled connection
    # still points at the killed server.
    recoveries = await run_restarts(
        two_instances, redis_server, outage_seconds=0, relay_during_outage=False
    )
    print("relaying again after", ", ".join(f"{s:.2f}s" for s in recoveries))


def http_status(server, path: str) -> int:
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
async def test_a_ninety_second_redis_outage_restarts_nothing(
    two_instances, redis_server
):
    """Liveness (the platform's health check) stays 200 and readiness says
    503, every relay is answered, and relaying resumes when Redis is back:
    nothing is restarted, no client reconnects."""
    a, b = two_instances
    left = await watched(a, "outage-left")
    right = await watched(b, "outage-right")
    pids = [a.pid, b.pid]
    redis_server.kill()
    down_at = time.monotonic()
    answered = Counter()
    while time.monotonic() - down_at < 90:
        for server in (a, b):
            assert await asyncio.to_thread(http_status, server, "/livez") == 200
            assert await asyncio.to_thread(http_status, server, "/healthz") == 503
        await left.client.send_json(
            {"type": "Offer", "target": "outage-right", "data": "during"}
        )
        reply = await asyncio.wait_for(left.inbox.get(), 20)
        assert reply["type"] == "Error", reply
        answered[reply["code"]] += 1
        await asyncio.sleep(5)
    assert set(answered) <= {"service_unavailable", "relay_failed"}, answered
    redis_server.start()
    back_at = time.monotonic()
    pairs = [(left, right)]
    while not await relay_round(pairs, "after", timeout=0.5):
        assert time.monotonic() - back_at < RECOVERY_LIMIT_SECONDS
        left.drain()
        right.drain()
    recovered = time.monotonic() - back_at
    for server in (a, b):
        assert await asyncio.to_thread(http_status, server, "/healthz") == 200
        assert server.process.poll() is None
    assert [a.pid, b.pid] == pids
    assert left.open and right.open
    assert left.peer_left_frames() == right.peer_left_frames() == []
    print(
        f"90 s Redis outage: {sum(answered.values())} relays answered "
        f"{dict(answered)}; relaying again {recovered:.2f}s after Redis returned"
    )
