"""How the consumer reads a burst, against a real Daphne: it steps aside
for other clients (pausing reads from the bursting socket) and still
delivers every frame, in order."""

import asyncio

from tests.clients import Client


async def test_a_burst_within_the_limit_arrives_complete_and_in_order(server):
    sender = await Client.connect(server.ws_url)
    receiver = await Client.connect(server.ws_url)
    other_a = await Client.connect(server.ws_url)
    other_b = await Client.connect(server.ws_url)
    for client, name in (
        (sender, "burst-sender"),
        (receiver, "burst-receiver"),
        (other_a, "other-a"),
        (other_b, "other-b"),
    ):
        assert (await client.sign_in(name))["type"] == "SignedIn"
    # 190 frames written at once: the server holds reading this socket
    # every few frames while it catches up, then must resume.
    frames = [
        {"type": "IceCandidates", "target": "burst-receiver", "data": str(n)}
        for n in range(190)
    ]
    await asyncio.gather(*(sender.send_json(frame) for frame in frames))
    # Meanwhile another pair still gets through.
    await other_a.send_json({"type": "Offer", "target": "other-b", "data": "sdp"})
    assert (await other_b.receive_json(timeout=5))["data"] == "sdp"
    received = [(await receiver.receive_json(timeout=5))["data"] for _ in frames]
    assert received == [str(n) for n in range(190)]
    assert await sender.receive_nothing()
    # Reading was resumed: the sender is still heard.
    await sender.send_json({"type": "IceCandidates", "target": "burst-receiver", "data": "after"})
    assert (await receiver.receive_json(timeout=5))["data"] == "after"
