"""The PeerJS consumer in this process (Channels' WebsocketCommunicator)."""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer

from signaling.core import peerjs
from signaling.presence.registry import registry
from tests.communicators import Peer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]


async def opened(peer_id: str) -> Peer:
    peer = await Peer.connect(
        path=f"/peerjs?key=peerjs&id={peer_id}&token=t&version=1.5.5"
    )
    assert await peer.receive() == {"type": "OPEN"}
    return peer


async def test_a_relay_the_layer_delivers_twice_reaches_the_peer_once(monkeypatch):
    # The in-memory layer as a layer that may repeat itself, like Redis.
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "delivers_once", False)
    alice, bob = await opened("alice"), await opened("bob")
    await alice.send(type="CANDIDATE", dst="bob", payload={"n": 1})
    first = await bob.receive()
    again = {
        "type": "peerjs.relay",
        "frame": '{"type":"CANDIDATE","src":"alice","dst":"bob","payload":{"n":1}}',
        "sender_channel": await registry.lookup(peerjs.claim_name("alice")),
        "target": "bob",
        "seq": 0,
    }
    await layer.send(await registry.lookup(peerjs.claim_name("bob")), again)
    assert await bob.receive_nothing()
    await alice.send(type="CANDIDATE", dst="bob", payload={"n": 2})
    assert (await bob.receive())["payload"] == {"n": 2}
    assert first["payload"] == {"n": 1}
    await alice.close()
    await bob.close()
