"""Redis Sentinel under two real Daphne instances: the master is killed and a
replica takes over while fifty pairs relay across the instances."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
import redis
import websockets

from tests.clients import Client
from tests.redis_server import SentinelSetUp

PAIRS = 50
SEND_EVERY_SECONDS = 0.5
FAILOVER_LIMIT_SECONDS = 30


@pytest.fixture
def sentinel_setup(tmp_path):
    setup = SentinelSetUp(tmp_path)
    yield setup
    setup.stop()


class Side:
    """One signed-in client: what it sent, what reached it, what it was told."""

    def __init__(self, client: Client, username: str) -> None:
        self.client = client
        self.username = username
        self.sent = 0
        self.delivered: list[tuple[int, float, float]] = []  # seq, sent, arrived
        self.errors: Counter[str] = Counter()
        self.others: list[dict] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.client.connection:
                frame = json.loads(text)
                if frame["type"] == "Error":
                    self.errors[frame["code"]] += 1
                elif frame["type"] == "IceCandidates":
                    seq, sent_at = frame["data"].split("@")
                    self.delivered.append((int(seq), float(sent_at), time.time()))
                else:
                    self.others.append(frame)
        except websockets.ConnectionClosed:
            pass

    async def send(self, target: str) -> None:
        data = f"{self.sent}@{time.time()}"
        self.sent += 1
        await self.client.send_json(
            {"type": "IceCandidates", "target": target, "data": data}
        )


async def signed_in_side(server, username: str) -> Side:
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in(username)
    assert reply["type"] == "SignedIn", reply
    return Side(client, username)


async def keep_relaying(pairs, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for left, right in pairs:
            await left.send(right.username)
            await right.send(left.username)
        await asyncio.sleep(SEND_EVERY_SECONDS)


@pytest.mark.slow
async def test_a_sentinel_failover_keeps_every_name_once_and_every_relay_once(
    sentinel_setup, start_server, shared_database_url
):
    a, b = [
        start_server(database_url=shared_database_url, **sentinel_setup.environment)
        for _ in range(2)
    ]
    pairs = [
        (
            await signed_in_side(a, f"sentinel-a{n}"),
            await signed_in_side(b, f"sentinel-b{n}"),
        )
        for n in range(PAIRS)
    ]
    sides = [side for pair in pairs for side in pair]
    stop = asyncio.Event()
    sender = asyncio.create_task(keep_relaying(pairs, stop))
    started = time.monotonic()
    while not all(side.delivered for side in sides):
        assert time.monotonic() - started < 30, "relaying never started"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)

    sentinel_setup.master.kill()
    killed_at = time.time()

    def flowing_again(side: Side) -> float | None:
        """When the first relay sent after the kill reached this side."""
        after = [arrived for _, sent, arrived in side.delivered if sent > killed_at]
        return min(after) - killed_at if after else None

    while any(flowing_again(side) is None for side in sides):
        assert time.time() - killed_at < FAILOVER_LIMIT_SECONDS, "relays did not resume"
        await asyncio.sleep(0.1)
    failover = max(flowing_again(side) for side in sides)
    await asyncio.sleep(3)
    stop.set()
    await sender
    await asyncio.sleep(2)  # what is on its way arrives

    assert sentinel_setup.master_port() == sentinel_setup.replica.port
    # No relay delivered twice.
    for side in sides:
        seqs = Counter(seq for seq, _, _ in side.delivered)
        assert [seq for seq, count in seqs.items() if count > 1] == [], side.username
    # No name live twice: every name is held by its one session, which is
    # still open, told nothing but relays and errors.
    new_master = redis.Redis(port=sentinel_setup.replica.port)
    holders = {
        side.username: new_master.hget(f"signaling:user:{side.username}", "channel")
        for side in sides
    }
    assert all(holders.values()), holders
    assert len(set(holders.values())) == len(sides)
    assert all(not side.reader.done() for side in sides)
    assert [side.others for side in sides] == [[]] * len(sides)
    # Relays after the failover reach their targets.
    left, right = pairs[0]
    before = len(right.delivered)
    await left.send(right.username)
    await asyncio.sleep(0.5)
    assert len(right.delivered) == before + 1

    sent = sum(side.sent for side in sides) - 1
    delivered = sum(len(side.delivered) for side in sides) - 1
    told = sum(sum(side.errors.values()) for side in sides)
    codes = sum((side.errors for side in sides), Counter())
    print(
        f"Sentinel failover: relays flowing again {failover:.2f}s after kill -9 of "
        f"the master; sent {sent}, delivered {delivered} (none twice), senders "
        f"told {told} {dict(codes)}, unaccounted {sent - delivered - told}"
    )
    # Nothing lost unseen, but for what Redis's asynchronous replication
    # can lose: a relay the dying master took and never passed on (0 or 1
    # per failover in the runs so far).
    assert sent - delivered - told <= 2
    for server in (a, b):
        assert "Exception inside application" not in server.log()
