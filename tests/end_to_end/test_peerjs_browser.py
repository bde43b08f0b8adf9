"""The real PeerJS client (npm ``peerjs``, locked in peerjs_client/) in
Chromium, against real Daphne processes, one or two sharing a real Redis.

The page and the library are served by a small HTTP server of the test on
another port than Daphne's, as a PeerJS app is served by its own site: the
Origin policy is exercised, with that origin allowed.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.browsers import TcpProxy

CLIENT_DIR = Path(__file__).resolve().parent / "peerjs_client"
LIBRARY = CLIENT_DIR / "node_modules" / "peerjs" / "dist" / "peerjs.min.js"
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def peerjs_library() -> Path:
    """The locked PeerJS build; ``npm ci`` on a fresh machine.

    Under a lock on the lock file: scripts/test runs two pytest workers,
    and each would otherwise install into the same node_modules at once.
    """
    with open(CLIENT_DIR / "package-lock.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not LIBRARY.exists():
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail(
                    "npm is missing: the PeerJS browser tests need it once to "
                    f"install the locked client (cd {CLIENT_DIR} && npm ci)",
                    pytrace=False,
                )
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, check=True
            )
    return LIBRARY


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path):
        if path.split("?")[0] == "/peerjs.min.js":
            return str(LIBRARY)
        return super().translate_path(path)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def page_origin(peerjs_library):
    """Serve index.html and the library; yield the site's origin."""
    handler = functools.partial(_PageHandler, directory=str(CLIENT_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def daphne(start_server, page_origin):
    def start(**env):
        return start_server(SIGNALING_ALLOWED_ORIGINS=page_origin, **env)

    return start


@pytest.fixture
async def open_peer(browser, page_origin):
    """Open a page (its own browser context) and start a Peer in it."""
    pages = []

    async def open_(peer_id: str | None, port: int, **options):
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        pages.append((page, errors))
        await page.goto(page_origin + "/index.html")
        config = {
            "host": "127.0.0.1",
            "port": port,
            "path": "/",
            "config": {"iceServers": []},
            "debug": 1,
            **options,
        }
        opened = await page.evaluate(
            "([id, config]) => window.startPeer(id, config)", [peer_id, config]
        )
        return page, opened

    yield open_
    errors = [error for _, page_errors in pages for error in page_errors]
    assert not errors, errors


async def events(page, kind: str) -> list[str]:
    return await page.evaluate(
        "(kind) => window.events.filter((e) => e.kind === kind).map((e) => e.detail)",
        kind,
    )


async def exchange(sender, receiver, receiver_id: str) -> None:
    """Open a DataConnection; send a message each way and a 1 MiB blob."""
    assert await sender.evaluate("(id) => window.connectTo(id)", receiver_id) == "open"
    await receiver.wait_for_function("window.connections.length === 1")
    await receiver.wait_for_function(
        "window.events.some((e) => e.kind === 'conn-open')"
    )
    await sender.evaluate("window.sendText('hello from the caller')")
    await receiver.wait_for_function("window.received.length === 1")
    assert await receiver.evaluate("window.received[0].value") == (
        "hello from the caller"
    )
    await receiver.evaluate("window.sendText('hello back')")
    await sender.wait_for_function("window.received.length === 1")
    sent_sum = await sender.evaluate(f"window.sendBlob({MIB})")
    await receiver.wait_for_function("window.received.length === 2", timeout=60_000)
    blob = await receiver.evaluate("window.received[1]")
    assert blob == {"binary": True, "length": MIB, "sum": sent_sum}


async def test_two_peers_exchange_messages_and_a_mebibyte(daphne, open_peer):
    server = daphne()
    alice, opened = await open_peer("alice", server.port)
    assert opened == "alice"
    bob, _ = await open_peer("bob", server.port)
    await exchange(alice, bob, "bob")


async def test_a_peer_without_an_id_gets_one_from_the_server(daphne, open_peer):
    server = daphne()
    _, opened = await open_peer(None, server.port)
    assert len(opened) == 36, opened


async def test_a_taken_id_gives_unavailable_id(daphne, open_peer):
    server = daphne()
    await open_peer("alice", server.port)
    _, opened = await open_peer("alice", server.port)
    assert opened == "error:unavailable-id"


async def test_calling_an_absent_id_gives_peer_unavailable(daphne, open_peer):
    server = daphne()
    alice, _ = await open_peer("alice", server.port)
    result = await alice.evaluate("(id) => window.connectTo(id)", "nobody")
    assert result == "error:peer-unavailable"


async def test_peers_on_two_instances_sharing_redis(
    daphne, open_peer, redis_url, shared_database_url
):
    first = daphne(REDIS_URL=redis_url, database_url=shared_database_url)
    second = daphne(REDIS_URL=redis_url, database_url=shared_database_url)
    alice, _ = await open_peer("alice", first.port)
    bob, _ = await open_peer("bob", second.port)
    await exchange(alice, bob, "bob")
    _, opened = await open_peer("bob", first.port)
    assert opened == "error:unavailable-id"


async def test_a_peer_that_lost_its_socket_reconnects(daphne, open_peer):
    server = daphne()
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        bob, _ = await open_peer("bob", proxy.port)
        proxy.drop_all()
        await bob.wait_for_function(
            "window.events.some((e) => e.kind === 'disconnected')"
        )
        await bob.evaluate("window.peer.reconnect()")
        await bob.wait_for_function(
            "window.events.filter((e) => e.kind === 'open').length === 2"
        )
        alice, _ = await open_peer("alice", server.port)
        assert await alice.evaluate("(id) => window.connectTo(id)", "bob") == "open"
    finally:
        await proxy.close()


async def test_a_media_call_shows_camera_frames(daphne, open_peer):
    server = daphne()
    bob, _ = await open_peer("bob", server.port)
    alice, _ = await open_peer("alice", server.port)
    await alice.evaluate("(id) => window.callWithCamera(id)", "bob")
    await bob.wait_for_function(
        "window.videoFrames().width > 0 && window.videoFrames().time > 0.2",
        timeout=30_000,
    )
