"""The ASGI entry point and WebSocket routes."""

import asyncio
import inspect

import pytest
from channels.testing import WebsocketCommunicator

from signaling_site.asgi import application


def test_servers_see_an_asgi3_application():
    # uvicorn and hypercorn call a plain function ASGI 2-style (scope
    # alone); only an ``async def`` is taken for ASGI 3.
    assert inspect.iscoroutinefunction(application)
    assert asyncio.iscoroutinefunction(application)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("background_tasks_stopped")
async def test_both_websocket_paths_reach_the_consumer_and_others_are_refused():
    for path, expected in (("/", True), ("/ws/", True), ("/ws", False), ("/x/", False)):
        communicator = WebsocketCommunicator(application, path)
        connected, _ = await communicator.connect()
        assert connected is expected, path
        await communicator.disconnect()
