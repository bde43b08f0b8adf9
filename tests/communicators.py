"""In-process WebSocket clients (Channels' WebsocketCommunicator)."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from signaling_site.asgi import application


class Peer:
    """A client connected to the ASGI application in this process."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    @classmethod
    async def connect(cls, *, path: str = "/", headers=(), client=("127.0.0.1", 5000)):
        communicator = WebsocketCommunicator(application, path, headers=list(headers))
        communicator.scope["client"] = client
        connected, _ = await communicator.connect()
        assert connected
        return cls(communicator)

    async def send(self, **content: Any) -> None:
        await self.communicator.send_json_to(content)

    async def send_text(self, text: str) -> None:
        # send_to() refuses empty text, which is a frame clients can send.
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def receive(self, timeout: float = 1) -> dict:
        return await self.communicator.receive_json_from(timeout)

    async def receive_nothing(self, timeout: float = 0.3) -> bool:
        """True when nothing (no frame, no close) is sent within ``timeout``:
        long enough for a relay to cross the in-memory layer even on a
        loaded machine (it takes well under a millisecond)."""
        return await self.communicator.receive_nothing(timeout)

    async def receive_close(self, timeout: float = 1) -> int:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.close", output
        return output.get("code", 1000)

    async def sign_in(self, username: str, password: str | None = None) -> dict:
        frame: dict[str, Any] = {"type": "SignIn", "username": username}
        if password is not None:
            frame["data"] = password
        await self.send(**frame)
        return await self.receive()

    async def close(self) -> None:
        await self.communicator.disconnect()


async def signed_in(username: str, password: str | None = None, **kwargs) -> Peer:
    peer = await Peer.connect(**kwargs)
    reply = await peer.sign_in(username, password)
    assert reply["type"] == "SignedIn", json.dumps(reply)
    return peer
