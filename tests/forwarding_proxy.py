"""A reverse proxy on loopback that does to a request what Render's does.

It appends the address it received the connection from to
``X-Forwarded-For`` (extending a header the client sent, as nginx's
``$proxy_add_x_forwarded_for`` does), opens its own connection to the
server from ``source``, and then pipes bytes both ways: a WebSocket upgrade
passes through untouched after its request head.
"""

from __future__ import annotations

import asyncio
import contextlib

HEAD_END = b"\r\n\r\n"


def append_forwarded_for(head: bytes, address: str) -> bytes:
    """Return the request head with ``address`` appended to the last
    ``X-Forwarded-For`` line, or in a new line when there is none."""
    lines = head[: -len(HEAD_END)].split(b"\r\n")
    for index in range(len(lines) - 1, 0, -1):
        name, colon, value = lines[index].partition(b":")
        if colon and name.strip().lower() == b"x-forwarded-for":
            lines[index] = name + b": " + value.strip() + b", " + address.encode()
            break
    else:
        lines.append(b"X-Forwarded-For: " + address.encode())
    return b"\r\n".join(lines) + HEAD_END


class ForwardingProxy:
    def __init__(self, upstream_port: int, *, source: str = "127.0.0.1") -> None:
        self.upstream_port = upstream_port
        self.source = source
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> ForwardingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        upstream_writer = None
        try:
            head = await reader.readuntil(HEAD_END)
            peer = writer.get_extra_info("peername")[0]
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port, local_addr=(self.source, 0)
            )
            upstream_writer.write(append_forwarded_for(head, peer))
            await asyncio.gather(
                _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            for side in (writer, upstream_writer):
                if side is not None:
                    side.close()


async def _pipe(reader, writer) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
