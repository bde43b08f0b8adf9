"""The trimmed per-connection state, against a real Daphne: what was moved
or dropped once a connection opened must not be missed later."""

import asyncio
import urllib.request

from signaling.speedups import daphne_footprint as footprint
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


class _Opened:
    """A stand-in for a protocol class: attributes as Autobahn sets them."""

    STATE = 3
    CONFIG_ATTRS = ["maxFramePayloadSize"]


def _opened(**overrides):
    connection = _Opened()
    attributes = {
        "state": 3,
        "closedByMe": False,
        "maxFramePayloadSize": 1048576,
        "peer": "tcp4:127.0.0.2:40000",
        "send_queue": [],
        "http_headers": {"host": "x"},
        "trafficStats": object(),
    }
    attributes.update(overrides)
    connection.__dict__.update(attributes)
    return connection


def _trimmed_one_by_one(connection, shared_class):
    # A fresh trimmer has no plans, so it looks at every attribute; over the
    # first trimmer's shared class, it reads the values the first
    # connection left there.
    twin = shared_class()
    twin.__dict__.update(connection.__dict__)
    footprint.Trimmer(shared_class).trim(twin)
    return twin.__dict__


def test_connections_laid_out_alike_are_trimmed_by_plan_as_one_by_one():
    trimmer = footprint.Trimmer(_Opened)
    first = _opened()
    trimmer.trim(first)
    # The first connection's shareable values became the shared class's;
    # the class given (Daphne's, in the server) is left as it was.
    shared = trimmer.shared_class
    assert type(first) is shared and issubclass(shared, _Opened)
    assert shared.closedByMe is False and shared.peer == "tcp4:127.0.0.2:40000"
    assert not hasattr(_Opened, "closedByMe") and not hasattr(_Opened, "peer")
    assert _Opened.CONFIG_ATTRS == ["maxFramePayloadSize"]
    assert "closedByMe" not in first.__dict__ and "http_headers" not in first.__dict__
    assert len(trimmer.plans) == 1
    for overrides in (
        {},
        {"trafficStats": object()},
        # Differs from the class: kept, whichever way it is trimmed.
        {"closedByMe": True},
        {"peer": "tcp4:127.0.0.3:40001"},
        # Equal but of another type: must not be read back as the class's.
        {"closedByMe": 0},
        {"maxFramePayloadSize": 1048576.0},
    ):
        connection = _opened(**overrides)
        expected = _trimmed_one_by_one(connection, shared)
        trimmer.trim(connection)
        assert connection.__dict__ == expected, overrides
        assert [type(v) for v in connection.__dict__.values()] == [
            type(v) for v in expected.values()
        ], overrides
        for name, value in overrides.items():
            assert type(getattr(connection, name)) is type(value), name
            assert getattr(connection, name) == value, name
