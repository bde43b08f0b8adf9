"""Origin checking at the WebSocket handshake, in process and against a real
Daphne."""

import pytest
import websockets
from channels.testing import WebsocketCommunicator

from signaling.ws.origins import normalize_origin, origin_allowed
from signaling_site.asgi import application
from tests.clients import Client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]

ALLOWED = frozenset({"https://app.example.com"})


@pytest.mark.parametrize(
    "origin, host, allowed",
    [
        (None, "signal.example.com", True),
        ("https://app.example.com", "signal.example.com", True),
        ("https://APP.example.com:443", "signal.example.com", True),
        ("https://signal.example.com", "signal.example.com", True),
        ("http://localhost:10000", "localhost:10000", True),
        ("https://evil.example", "signal.example.com", False),
        ("null", "signal.example.com", False),
        ("https://app.example.com.evil.example", "signal.example.com", False),
        ("https://evil-app.example.com", "signal.example.com", False),
        ("http://app.example.com", "signal.example.com", False),
        ("https://app.example.com:8443", "signal.example.com", False),
        ("https://signal.example.com.evil.example", "signal.example.com", False),
        ("file://", "signal.example.com", False),
        ("garbage", "signal.example.com", False),
    ],
)
def test_origins_are_checked_against_the_allow_list_and_own_host(origin, host, allowed):
    assert (
        origin_allowed(origin, host=host, allowed_origins=ALLOWED, allow_missing=True)
        is allowed
    )


def test_clients_without_origin_can_be_refused():
    assert not origin_allowed(
        None, host="x", allowed_origins=ALLOWED, allow_missing=False
    )


def test_origins_normalize_default_ports_and_case():
    assert normalize_origin("HTTPS://Example.COM:443") == "https://example.com"
    assert normalize_origin("http://example.com:8080/") == "http://example.com:8080"
    assert normalize_origin("null") is None


async def handshake(headers) -> bool:
    communicator = WebsocketCommunicator(application, "/", headers=headers)
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected


async def test_a_foreign_origin_is_refused_at_the_handshake():
    assert not await handshake([(b"origin", b"https://evil.example"), (b"host", b"x")])


async def test_a_native_client_without_origin_is_accepted():
    assert await handshake([(b"host", b"signal.example.com")])


async def test_the_servers_own_pages_are_accepted():
    assert await handshake(
        [(b"origin", b"http://localhost:10000"), (b"host", b"localhost:10000")]
    )


async def test_a_configured_origin_is_accepted(settings):
    settings.SIGNALING_ALLOWED_ORIGINS = ["https://app.example.com"]
    # The middleware reads settings when the application is built.
    from signaling.ws.origins import OriginCheckMiddleware
    from signaling.ws.routing import websocket_application

    app = OriginCheckMiddleware(websocket_application)
    communicator = WebsocketCommunicator(
        app, "/", headers=[(b"origin", b"https://app.example.com"), (b"host", b"x")]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


async def test_unknown_websocket_paths_are_refused():
    communicator = WebsocketCommunicator(application, "/elsewhere/")
    connected, _ = await communicator.connect()
    assert not connected


# The same policy end to end: a real Daphne answers the handshake itself.


async def handshake_status(server, origin: str | None) -> int:
    """101 when the WebSocket opens, else the HTTP status Daphne answered."""
    try:
        client = await Client.connect(server.ws_url, origin=origin)
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await client.close()
    return 101


async def test_a_real_server_refuses_foreign_origins_and_accepts_its_own_pages(
    start_server,
):
    server = start_server()
    own = f"http://127.0.0.1:{server.port}"
    statuses = {
        origin: await handshake_status(server, origin)
        for origin in [
            None,
            own,
            "https://evil.example",
            "null",
            f"http://127.0.0.1.evil.example:{server.port}",
        ]
    }
    assert statuses == {
        None: 101,
        own: 101,
        "https://evil.example": 403,
        "null": 403,
        f"http://127.0.0.1.evil.example:{server.port}": 403,
    }
    assert "code=origin_not_allowed" in server.log()


async def test_a_real_server_can_refuse_clients_without_origin(start_server):
    server = start_server(SIGNALING_ALLOW_MISSING_ORIGIN="0")
    assert await handshake_status(server, None) == 403
    assert await handshake_status(server, f"http://127.0.0.1:{server.port}") == 101


async def test_a_real_server_accepts_exactly_the_configured_origins(start_server):
    server = start_server(
        SIGNALING_ALLOWED_ORIGINS="https://app.example.com,https://other.example:8443"
    )
    assert await handshake_status(server, "https://app.example.com") == 101
    assert await handshake_status(server, "https://APP.example.com:443") == 101
    assert await handshake_status(server, "https://other.example:8443") == 101
    assert await handshake_status(server, "http://app.example.com") == 403
    assert await handshake_status(server, "https://other.example") == 403
    assert await handshake_status(server, "https://evil.example") == 403
    assert "cross-site WebSocket hijacking" not in server.log()


async def test_a_wildcard_origin_accepts_any_page_and_warns_at_start(start_server):
    server = start_server(SIGNALING_ALLOWED_ORIGINS="*")
    # Logged once the application is loaded, before any connection.
    assert "SIGNALING_ALLOWED_ORIGINS contains '*'" in server.log()
    assert await handshake_status(server, "https://evil.example") == 101
    # A missing Origin still follows its own switch.
    assert await handshake_status(server, None) == 101
