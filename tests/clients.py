"""A real WebSocket client speaking the signaling protocol, for tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


class Client:
    def __init__(self, connection) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, url: str, **kwargs) -> Client:
        # Like the Android app: no Origin header unless a test sets one.
        return cls(await websockets.connect(url, max_size=None, **kwargs))

    async def send_json(self, content: Any) -> None:
        await self.connection.send(json.dumps(content))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.connection.send(frame)

    async def receive_text(self, timeout: float = 3) -> str:
        return await asyncio.wait_for(self.connection.recv(), timeout)

    async def receive_json(self, timeout: float = 3) -> dict:
        return json.loads(await self.receive_text(timeout))

    async def receive_nothing(self, timeout: float = 0.3) -> bool:
        """True when no frame arrives within ``timeout`` and the connection
        is still open. A close is a failure: a dropped connection receives
        nothing too, and must not pass for a client left alone (a test that
        expects a close waits for it with ``wait_closed``)."""
        try:
            frame = await asyncio.wait_for(self.connection.recv(), timeout)
        except asyncio.TimeoutError:
            return True
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            raise AssertionError(
                f"connection closed (code {code}) while expecting nothing"
            ) from None
        raise AssertionError(f"unexpected frame {frame!r}")

    async def sign_in(
        self, username: str, password: str | None = None, *, timeout: float = 3
    ) -> dict:
        frame: dict[str, Any] = {"type": "SignIn", "username": username}
        if password is not None:
            frame["data"] = password
        await self.send_json(frame)
        return await self.receive_json(timeout)

    async def wait_closed(self, timeout: float = 3) -> int | None:
        await asyncio.wait_for(self.connection.wait_closed(), timeout)
        return self.connection.close_code

    async def close(self) -> None:
        await self.connection.close()
