"""Writes coalesced at the end of a loop turn, against a real Daphne."""

import asyncio

from tests.clients import Client


async def test_frames_larger_than_the_socket_buffers_arrive_whole_and_in_order(server):
    # 120 frames of ~60 KB (7 MB) to a receiver that does not read at first:
    # the kernel takes only part of each send, so the rest must wait for
    # writability and still go out in order.
    sender = await Client.connect(server.ws_url)
    receiver = await Client.connect(server.ws_url, max_queue=1)
    assert (await sender.sign_in("big-sender"))["type"] == "SignedIn"
    assert (await receiver.sign_in("big-receiver"))["type"] == "SignedIn"
    count, body = 120, "x" * 60_000
    # Within the rate limit's burst (200 frames).
    for index in range(count):
        await sender.send_json(
            {"type": "Offer", "target": "big-receiver", "data": f"{index}:{body}"}
        )
    await asyncio.sleep(1.5)
    for index in range(count):
        frame = await receiver.receive_json(timeout=10)
        assert frame["type"] == "Offer"
        assert frame["data"] == f"{index}:{body}"
    assert await sender.receive_nothing()


async def test_many_small_replies_in_one_turn_all_arrive(server):
    clients = [await Client.connect(server.ws_url) for _ in range(20)]
    for number, client in enumerate(clients):
        assert (await client.sign_in(f"small-{number}"))["type"] == "SignedIn"
    # Everyone sends to small-0 at once: many writes to one socket in a turn.
    await asyncio.gather(
        *(
            client.send_json({"type": "IceCandidates", "target": "small-0", "data": str(n)})
            for n, client in enumerate(clients[1:], start=1)
        )
    )
    received = sorted([int((await clients[0].receive_json())["data"]) for _ in clients[1:]])
    assert received == list(range(1, 20))
    assert "Traceback" not in server.log()
    for client in clients:
        await client.close()
