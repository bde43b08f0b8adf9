"""How the consumer reads: a burst, against a real Daphne, steps aside for
other clients (pausing reads from the bursting socket) and still delivers
every frame, in order; fed from a Mailbox (as under Daphne), it reads its
channel layer events from the same inbox."""

import asyncio
import json

import pytest
from channels.layers import get_channel_layer

from signaling.core.protocol import group_name
from signaling.ws.mailbox import Mailbox
from signaling_site.asgi import application
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("background_tasks_stopped")
async def test_a_mailbox_fed_consumer_takes_layer_events_at_once_or_queued_dropping_expired():
    # As under Daphne: the inbox is a Mailbox, so the in-memory layer
    # delivers into it and no second reader runs.
    inbox, sent = Mailbox(), asyncio.Queue()
    scope = {
        "type": "websocket", "path": "/", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80), "subprotocols": [],
    }
    task = asyncio.ensure_future(application(scope, inbox.get, sent.put))
    inbox.put({"type": "websocket.connect"})
    assert (await asyncio.wait_for(sent.get(), 3))["type"] == "websocket.accept"
    sign_in = json.dumps({"type": "SignIn", "username": "mbox"})
    inbox.put({"type": "websocket.receive", "text": sign_in})
    assert json.loads((await asyncio.wait_for(sent.get(), 3))["text"])["type"] == "SignedIn"
    layer = get_channel_layer()
    [channel] = layer.groups[group_name("mbox")]
    assert layer.channels[channel] is inbox
    event = {"type": "signal.relay", "frame": '{"type": "Offer"}', "sender": "x",
             "sender_channel": "specific..inmemory!x", "target": "mbox"}
    # Idle: handled at once, in the sender's task.
    await layer.send(channel, event)
    assert sent.get_nowait()["text"] == '{"type": "Offer"}'
    # Busy with a socket event: queued behind it, and dropped if it expired
    # before the consumer got to it.
    inbox.put({"type": "websocket.receive", "text": "not json"})
    layer.expiry, expiry = -1, layer.expiry
    try:
        await layer.send(channel, event)
    finally:
        layer.expiry = expiry
    assert json.loads((await asyncio.wait_for(sent.get(), 3))["text"])["type"] == "Error"
    await asyncio.sleep(0.05)
    assert sent.empty()
    inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 3)
    assert channel not in layer.channels
