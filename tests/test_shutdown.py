"""A single Daphne with the in-memory layer stopping (SIGTERM): every client
is told to reconnect elsewhere, with a frame and a close code."""

import asyncio
import signal
import time

from tests.clients import Client


async def test_a_stopping_single_instance_tells_every_client_to_reconnect(start_server):
    server = start_server()  # no REDIS_URL: Channels' in-memory layer
    clients = []
    for name in ("term-alice", "term-bob"):
        client = await Client.connect(server.ws_url)
        assert (await client.sign_in(name))["type"] == "SignedIn"
        clients.append(client)
    # One connected socket that never signed in is told as well.
    clients.append(await Client.connect(server.ws_url))
    server.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    for client in clients:
        frame = await client.receive_json(timeout=5)
        assert frame["type"] == "Reconnect", frame
        assert await client.wait_closed(timeout=5) == 4003
    told_after = time.monotonic() - stopped_at
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    assert "Traceback" not in server.log()
    print(f"SIGTERM, one instance: 3 clients told to reconnect in {told_after:.2f}s")
