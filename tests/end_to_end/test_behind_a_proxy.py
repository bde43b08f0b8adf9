"""Client addresses behind a real reverse proxy, with a real Daphne.

The proxy (tests/forwarding_proxy.py) appends the address each client
connects to it from, as Render's does; distinct client addresses come from
binding sockets to 127.0.x.y (all of 127.0.0.0/8 is loopback on Linux).
Every client address is judged through what a client sees: the per-address
connection cap refusing it, or not.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.clients import Client
from tests.forwarding_proxy import ForwardingProxy, append_forwarded_for

CAP = 5  # per address, low so that 300 clients sharing one would show


@pytest.fixture
async def proxy_to():
    proxies: list[ForwardingProxy] = []

    async def start(server, *, source: str = "127.0.0.1") -> ForwardingProxy:
        proxy = await ForwardingProxy(server.port, source=source).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.stop()


async def connect(url: str, address: str, forged: str | None = None) -> Client:
    headers = {"X-Forwarded-For": forged} if forged else None
    return await Client.connect(
        url, local_addr=(address, 0), additional_headers=headers
    )


async def refused(client: Client) -> bool:
    """Whether the server refused the connection at the per-address cap."""
    frame = await client.receive_json()
    if frame.get("code") != "too_many_connections":
        return False
    assert await client.wait_closed() == 4009
    return True


async def signs_in(client: Client, name: str) -> bool:
    return (await client.sign_in(name))["type"] == "SignedIn"


def test_the_proxy_appends_to_a_header_the_client_sent():
    head = b"GET / HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 6.6.6.6\r\n\r\n"
    assert append_forwarded_for(head, "127.0.0.9") == (
        b"GET / HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 6.6.6.6, 127.0.0.9\r\n\r\n"
    )
    assert append_forwarded_for(b"GET / HTTP/1.1\r\n\r\n", "127.0.0.9") == (
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 127.0.0.9\r\n\r\n"
    )


async def test_with_the_render_setting_300_clients_behind_one_proxy_all_sign_in(
    start_server, proxy_to
):
    server = start_server(
        SIGNALING_TRUSTED_PROXIES="*",
        SIGNALING_MAX_CONNECTIONS_PER_ADDRESS=str(CAP),
    )
    proxy = await proxy_to(server)
    addresses = [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(300)]
    clients = await asyncio.gather(
        *(connect(proxy.ws_url, address) for address in addresses)
    )
    # Every socket reaches Daphne from the proxy's one address; 300 > CAP.
    signed = await asyncio.gather(
        *(signs_in(client, f"user{n}") for n, client in enumerate(clients))
    )
    assert all(signed)
    await asyncio.gather(*(client.close() for client in clients))


async def test_the_cap_still_applies_to_one_forwarded_address_whatever_it_forges(
    start_server, proxy_to
):
    server = start_server(
        SIGNALING_TRUSTED_PROXIES="*",
        SIGNALING_MAX_CONNECTIONS_PER_ADDRESS=str(CAP),
    )
    proxy = await proxy_to(server)
    # Each claims another address; the proxy appends the real one.
    clients = [
        await connect(proxy.ws_url, "127.0.9.9", forged=f"198.51.100.{n}")
        for n in range(CAP + 1)
    ]
    for n, client in enumerate(clients[:CAP]):
        assert await signs_in(client, f"shared{n}")
    assert await refused(clients[CAP])
    # Another address behind the same proxy is unaffected.
    other = await connect(proxy.ws_url, "127.0.9.10")
    assert await signs_in(other, "elsewhere")
    for client in clients[:CAP] + [other]:
        await client.close()


async def test_a_direct_client_forging_the_header_is_judged_by_its_socket(
    start_server, proxy_to
):
    # The proxy's own connections come from 127.0.0.2, the only trusted
    # address; the direct client connects from 127.0.0.3.
    server = start_server(
        SIGNALING_TRUSTED_PROXIES="127.0.0.2",
        SIGNALING_MAX_CONNECTIONS_PER_ADDRESS="2",
    )
    proxy = await proxy_to(server, source="127.0.0.2")
    forgers = [
        await connect(server.ws_url, "127.0.0.3", forged=f"198.51.100.{n}")
        for n in range(3)
    ]
    assert await signs_in(forgers[0], "forger0")
    assert await signs_in(forgers[1], "forger1")
    assert await refused(forgers[2])
    # Through the trusted proxy, the same header is believed: three
    # clients from three addresses, more than the cap of its one address.
    behind = [await connect(proxy.ws_url, f"127.0.4.{n + 1}") for n in range(3)]
    for n, client in enumerate(behind):
        assert await signs_in(client, f"behind{n}")
    for client in forgers[:2] + behind:
        await client.close()


def test_a_bad_trusted_proxy_entry_stops_daphne_at_start(start_server):
    with pytest.raises(RuntimeError, match="SIGNALING_TRUSTED_PROXIES.*10.0.0.0/33"):
        start_server(SIGNALING_TRUSTED_PROXIES="10.0.0.0/8,10.0.0.0/33")
