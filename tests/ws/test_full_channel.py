"""A relay to a session whose channel is genuinely full is refused with
``target_busy``, never lost in silence, and nobody else notices.

Real instances, real Redis: the target's instance is frozen (SIGSTOP), so
nothing drains its channel in Redis until the capacity refuses more.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.clients import Client

# SIGNALING_CHANNEL_CAPACITY=1: with Redis an instance's channel holds 100.
CAPACITY = 100
SENT = 150
# The frozen instance's names lapse after the 3 s presence TTL; the test
# must be done before that (a lapsed target answers target_not_found).
PRESENCE_TTL_SECONDS = 3


async def signed_in(server, username: str) -> Client:
    client = await Client.connect(server.ws_url)
    reply = await client.sign_in(username)
    assert reply["type"] == "SignedIn", reply
    return client


@pytest.fixture
def instances(start_server, redis_url, shared_database_url):
    return [
        start_server(
            database_url=shared_database_url,
            REDIS_URL=redis_url,
            SIGNALING_CHANNEL_CAPACITY="1",
        )
        for _ in range(2)
    ]


async def test_a_full_channel_answers_target_busy_and_bystanders_lose_nothing(instances):
    a, b = instances
    target = await signed_in(b, "busy-target")
    sender = await signed_in(a, "busy-sender")
    bystander_1 = await signed_in(a, "busy-bystander-1")
    bystander_2 = await signed_in(a, "busy-bystander-2")
    b.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        for seq in range(SENT):
            await sender.send_json(
                {"type": "IceCandidates", "target": "busy-target", "data": str(seq)}
            )
        # Meanwhile other users of the same instance relay as usual.
        for seq in range(50):
            await bystander_1.send_json(
                {"type": "IceCandidates", "target": "busy-bystander-2", "data": str(seq)}
            )
        assert [(await bystander_2.receive_json())["data"] for _ in range(50)] == [
            str(seq) for seq in range(50)
        ]
        # Every relay the full channel refused is answered, one Error each.
        busy = 0
        while True:
            try:
                reply = await sender.receive_json(timeout=0.3)
            except asyncio.TimeoutError:
                break
            assert reply.get("code") == "target_busy", reply
            busy += 1
        frozen_for = time.monotonic() - frozen_at
        assert frozen_for < PRESENCE_TTL_SECONDS, "too slow: the target's name lapsed"
        assert await bystander_1.receive_nothing()
    finally:
        b.signal(signal.SIGCONT)
    # Redis may hand the frozen reader a message it was already waiting
    # for, so a few more than the capacity can be taken; never fewer.
    assert SENT - CAPACITY - 3 <= busy <= SENT - CAPACITY, busy
    accepted = SENT - busy
    # Once its instance runs again the target gets every accepted relay, in
    # order, and nothing else.
    received = [(await target.receive_json(timeout=10))["data"] for _ in range(accepted)]
    assert received == [str(seq) for seq in range(accepted)]
    assert await target.receive_nothing()
    # And relays to it are accepted again.
    await sender.send_json({"type": "Offer", "target": "busy-target", "data": "again"})
    assert (await target.receive_json(timeout=5))["data"] == "again"
    print(
        f"full channel: {SENT} relays to a frozen instance, {accepted} queued, "
        f"{busy} answered target_busy within {frozen_for:.2f}s; bystanders 50/50"
    )
