"""The trimmed per-connection state, against a real Daphne: what was moved
or dropped once a connection opened must not be missed later."""

import asyncio
import urllib.request

from tests.clients import Client


async def test_connections_opened_after_the_first_behave_the_same(server):
    # The first open connection seeds the class-level defaults; later ones
    # read them. All must sign in, relay and close cleanly.
    clients = [await Client.connect(server.ws_url) for _ in range(6)]
    for number, client in enumerate(clients):
        assert (await client.sign_in(f"trim-{number}"))["type"] == "SignedIn"
    for number, client in enumerate(clients[1:], start=1):
        await client.send_json({"type": "StartConnection", "target": "trim-0"})
        frame = await clients[0].receive_json()
        assert frame == {
            "type": "StartConnection",
            "username": f"trim-{number}",
            "target": "trim-0",
        }
    for client in clients:
        await client.close()
        assert client.connection.close_code == 1000


async def test_plain_http_keeps_working_between_websocket_upgrades(server):
    for round_number in range(3):
        client = await Client.connect(server.ws_url)
        assert (await client.sign_in(f"http-{round_number}"))["type"] == "SignedIn"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(server.http_url + "/", timeout=5).read()
        )
        assert body.startswith(b"Server is running")
        await client.close()


async def test_a_trimmed_connection_closes_and_is_logged_without_errors(server):
    # Daphne reads the request path at disconnect; the trimmed request
    # object must still have it.
    client = await Client.connect(server.ws_url)
    assert (await client.sign_in("path-reader"))["type"] == "SignedIn"
    await client.connection.close()
    await asyncio.sleep(0.5)
    log = server.log()
    assert "Traceback" not in log and "AttributeError" not in log
