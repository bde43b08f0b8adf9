"""Origin checking at the WebSocket handshake."""

import pytest
from channels.testing import WebsocketCommunicator

from signaling.origins import normalize_origin, origin_allowed
from signaling_site.asgi import application

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
    from signaling.origins import OriginCheckMiddleware
    from signaling.routing import websocket_application

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
