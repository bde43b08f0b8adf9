"""Upgrade requests handed straight to Autobahn, against a real Daphne: the
fast path must accept what Daphne accepts and leave everything else to
Daphne's own handling."""

import asyncio
import base64
import os
import socket

from tests.clients import Client


def handshake(path: str = "/", extra: bytes = b"", key: bytes | None = None) -> bytes:
    key = key or base64.b64encode(os.urandom(16))
    return (
        b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\n"
        b"Host: localhost\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def exchange(server, *pieces: bytes, pause: float = 0.0) -> bytes:
    """Send the pieces (pausing between them) and return the response head."""
    host, port = server.http_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        for piece in pieces:
            sock.sendall(piece)
            if pause:
                import time

                time.sleep(pause)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
    return response


async def test_a_complete_upgrade_request_is_switched(server):
    response = await asyncio.to_thread(exchange, server, handshake())
    assert response.startswith(b"HTTP/1.1 101 ")


async def test_a_request_split_over_two_reads_still_upgrades(server):
    request = handshake()
    response = await asyncio.to_thread(
        exchange, server, request[:30], request[30:], pause=0.2
    )
    assert response.startswith(b"HTTP/1.1 101 ")


async def test_an_invalid_header_value_is_refused_as_daphne_refuses_it(server):
    response = await asyncio.to_thread(
        exchange, server, handshake(extra=b"X-Bad: a\x0bb\r\n")
    )
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_a_non_ascii_path_is_refused_as_daphne_refuses_it(server):
    response = await asyncio.to_thread(exchange, server, handshake(path="/\xe9"))
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_other_paths_are_still_refused_at_the_handshake(server):
    response = await asyncio.to_thread(exchange, server, handshake(path="/elsewhere/"))
    assert response.startswith(b"HTTP/1.1 403 ")


async def test_a_query_string_and_the_ws_alias_reach_the_consumer(server):
    client = await Client.connect(server.ws_url + "ws/?client=android")
    assert (await client.sign_in("handoff-query"))["type"] == "SignedIn"
    await client.close()
    assert "Traceback" not in server.log()


async def test_plain_http_on_a_fresh_connection_is_untouched(server):
    response = await asyncio.to_thread(
        exchange, server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 200 ")


def test_the_query_string_of_a_complete_upgrade_request_is_found():
    from signaling.speedups.twisted_web_handoff import upgrade_query_string

    assert upgrade_query_string(handshake("/?a=1&b=2")) == b"a=1&b=2"
    assert upgrade_query_string(handshake("/ws/")) == b""


def test_anything_daphne_would_treat_otherwise_is_left_to_daphne():
    from signaling.speedups.twisted_web_handoff import upgrade_query_string

    complete = handshake()
    left_to_daphne = [
        complete[:-2],  # not complete yet
        complete.replace(b"GET ", b"POST ", 1),
        complete.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        complete.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        complete.replace(b"Host: localhost", b"Bad Name: x"),
        complete.replace(b"Host: localhost", b"Host: a\x0bb"),
        complete.replace(b"Host: localhost", b"Upgrade: websocket"),  # twice
        handshake(path="/\xe9"),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ]
    for request in left_to_daphne:
        assert upgrade_query_string(request) is None, request
