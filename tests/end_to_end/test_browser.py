"""The web client in a real Chromium, through a real server.

Debian's Chromium, driven by Playwright, headless. A missing browser fails
these tests with instructions; it never skips them.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import time
import zlib
from pathlib import Path
from struct import pack

import pytest

from tests.browsers import (
    TcpProxy,
    WebClient,
    collect_static,
    open_client,
)
from tests.clients import Client
from tests.peers import (
    WEB_CHANNEL_PROTOCOL,
    FileReceiver,
    Peer,
    send_file,
)

MIB = 1024 * 1024


@pytest.fixture(scope="session")
def static_files():
    collect_static()


@pytest.fixture
def web_server(start_server, static_files):
    return start_server()


@pytest.fixture
async def open_page(browser, web_server, request):
    """Open web client pages; on failure save their screenshots and logs."""
    clients: list[WebClient] = []

    async def open_(
        label: str, *, sign_in: bool = True, base_url: str = ""
    ) -> WebClient:
        url = (base_url or web_server.http_url) + "/app/"
        client = await open_client(browser, url, label)
        clients.append(client)
        if sign_in:
            await client.sign_in(label)
        return client

    # The call phase's failure is counted before teardown runs, which
    # tells this fixture whether to keep evidence without a conftest hook.
    failed_before = request.session.testsfailed
    yield open_
    if request.session.testsfailed > failed_before:
        for client in clients:
            await client.save_artifacts(request.node.name)
    errors = {c.label: c.errors for c in clients if c.errors}
    assert not errors, f"errors in the pages: {errors}"


def payload_file(directory: Path, name: str, size: int, seed: int = 1) -> Path:
    path = directory / name
    # Random bytes: nothing on the way can shortcut them by compression.
    path.write_bytes(os.urandom(size) if seed else bytes(size))
    return path


def tiny_png() -> bytes:
    """A valid 2x2 red PNG, made here rather than shipped."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return pack(">I", len(data)) + body + pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def connect_pages(alice: WebClient, bob: WebClient) -> float:
    """alice asks bob, bob accepts; return seconds from click to open."""
    clicked = await alice.connect_to("bob")
    await bob.accept()
    await alice.wait_open()
    seconds = time.perf_counter() - clicked
    await bob.wait_open()
    return seconds


async def test_two_browsers_transfer_an_8_mib_file(open_page, tmp_path, capsys):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await connect_pages(alice, bob)
    connect_ms = await alice.page.evaluate("window.p2p.stats.connectToOpenMs")
    path = payload_file(tmp_path, "eight.bin", 8 * MIB)

    started = time.perf_counter()
    await alice.send_files(path)
    received = await bob.wait_file("in", "eight.bin")
    sent = await alice.wait_file("out", "eight.bin")
    wall = time.perf_counter() - started

    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert received["size"] == 8 * MIB
    assert await bob.sha256("in", "eight.bin") == expected
    assert await alice.sha256("out", "eight.bin") == expected
    assert (await alice.progress("out", "eight.bin"))[0] == "100"
    assert (await bob.progress("in", "eight.bin"))[0] == "100"
    assert (await bob.progress("in", "eight.bin"))[1].startswith("Received in")
    assert (await alice.progress("out", "eight.bin"))[1].startswith("Delivered in")
    rate = 8 * MIB / sent["seconds"] / 1e6
    # Shown even without -s: these figures are what the test is for.
    with capsys.disabled():
        print(
            f"\nbrowser to browser: connect click to open data channel {connect_ms} ms;"
            f" 8 MiB delivered in {sent['seconds']:.2f} s ({rate:.1f} MB/s),"
            f" {wall:.2f} s wall clock from choosing the file"
        )


async def video_progress(page, selector: str) -> tuple[int, float]:
    return tuple(
        await page.eval_on_selector(selector, "(v) => [v.videoWidth, v.currentTime]")
    )


async def test_a_shared_screen_plays_for_the_viewer_and_either_side_stops_it(
    open_page,
):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await connect_pages(alice, bob)
    # bob accepted, so bob's channel carries the web protocol and alice
    # says hello: wait until bob knows alice is a web client.
    await bob.page.wait_for_selector("#share-button", state="visible")

    await alice.page.click("#share-button")
    await alice.page.wait_for_selector("#sharing-state", state="visible")
    await bob.page.wait_for_selector("#screen-panel", state="visible")
    await bob.page.wait_for_function(
        "() => document.querySelector('#remote-screen').videoWidth > 0",
        timeout=15_000,
    )
    width, first = await video_progress(bob.page, "#remote-screen")
    await bob.page.wait_for_function(
        "(first) => document.querySelector('#remote-screen').currentTime > first + 0.5",
        arg=first,
    )
    assert width > 0

    # The sharer stops: the viewer's picture goes away.
    await alice.page.click("#stop-sharing-button")
    await bob.page.wait_for_selector("#screen-panel", state="hidden")
    await bob.wait_message("alice stopped sharing their screen.")

    # Shared again, the viewer stops it: the sharer stops sending.
    await alice.page.click("#share-button")
    await bob.page.wait_for_selector("#screen-panel", state="visible")
    await bob.page.wait_for_function(
        "() => document.querySelector('#remote-screen').videoWidth > 0",
        timeout=15_000,
    )
    await bob.page.click("#stop-viewing-button")
    await alice.page.wait_for_selector("#sharing-state", state="hidden")
    await alice.wait_message("bob closed your shared screen, so sharing stopped.")
    assert await alice.page.is_enabled("#share-button")


async def test_a_browser_and_an_aiortc_peer_transfer_files_both_ways(
    open_page, web_server, tmp_path
):
    alice = await open_page("alice")
    robot = await Peer.sign_in(web_server.ws_url, "robot")
    try:
        await alice.connect_to("robot")
        assert (await robot.next_event())["type"] == "StartConnection"
        channel = await robot.accept("alice", protocol=WEB_CHANNEL_PROTOCOL)
        receiver = FileReceiver(channel)
        await robot.open_channel()
        await alice.wait_open()
        # alice saw the web protocol on the channel and said hello.
        assert '"kind":"hello"' in (await receiver.next_message()).replace(" ", "")

        # Browser to aiortc.
        path = payload_file(tmp_path, "to-robot.bin", 3 * MIB)
        await alice.send_files(path)
        got = await receiver.next_file()
        assert got.name == "to-robot.bin"
        assert got.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        # aiortc acknowledged, so the browser shows the file as delivered.
        await alice.wait_file("out", "to-robot.bin")

        # aiortc to browser.
        payload = os.urandom(3 * MIB)
        await send_file(channel, payload, name="from-robot.bin")
        await alice.wait_file("in", "from-robot.bin")
        assert (
            await alice.sha256("in", "from-robot.bin")
            == hashlib.sha256(payload).hexdigest()
        )
        assert '"kind":"done"' in (await receiver.next_message()).replace(" ", "")
    finally:
        await robot.close()


async def test_a_declined_request_tells_the_requester_in_plain_words(open_page):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await alice.connect_to("bob")
    await bob.decline()
    assert await alice.wait_notice("bob declined your request.")
    await bob.page.wait_for_selector("#request-panel", state="hidden")
    # alice can ask again at once.
    await alice.page.wait_for_selector("#connect-panel", state="visible")


async def test_asking_an_offline_user_says_they_are_not_online(open_page):
    alice = await open_page("alice")
    await alice.connect_to("nobody")
    assert await alice.wait_notice("nobody is not online.")


async def test_an_unanswered_request_gives_up_and_is_withdrawn(open_page):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await alice.page.evaluate("window.p2p.config.requestTimeoutMs = 1500")
    await alice.connect_to("bob")
    await bob.page.wait_for_selector("#request-panel", state="visible")
    assert await alice.wait_notice("bob did not answer within 2 seconds.")
    assert await bob.wait_notice("alice withdrew the request.")
    await bob.page.wait_for_selector("#request-panel", state="hidden")


async def test_a_peer_closing_its_tab_mid_transfer_is_reported(open_page, tmp_path):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await connect_pages(alice, bob)
    path = payload_file(tmp_path, "big.bin", 64 * MIB, seed=0)
    await alice.send_files(path)
    await bob.page.wait_for_function(
        "() => window.p2p.files().some((f) => f.direction === 'in' && f.bytes > 0)"
    )
    closed = time.perf_counter()
    await bob.page.close()

    notice = await alice.wait_notice("bob left")
    print(
        f"\ntab closed mid-transfer: reported after {time.perf_counter() - closed:.2f} s"
    )
    sent = await alice.wait_file("out", "big.bin", state="failed")
    assert sent["note"].startswith("Stopped: bob left")
    percent, detail = await alice.progress("out", "big.bin")
    assert int(percent) < 100
    assert "bob left" in detail, (notice, detail)


async def test_the_page_reconnects_with_growing_delays_after_losing_the_server(
    open_page, web_server
):
    proxy = TcpProxy(web_server.port)
    await proxy.start()
    try:
        alice = await open_page(
            "alice", sign_in=False, base_url=f"http://127.0.0.1:{proxy.port}"
        )
        await alice.page.evaluate("window.p2p.config.reconnectBaseMs = 250")
        await alice.sign_in("alice")
        proxy.refuse = 3
        cut = len(proxy.accepted_at)
        proxy.drop_all()
        await alice.page.wait_for_selector("#status[data-state=reconnecting]")
        await alice.page.wait_for_selector("#status[data-state=online]", timeout=20_000)

        attempts = proxy.accepted_at[cut:]
        gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
        assert len(gaps) >= 3, attempts
        # Back-off: each wait is longer than the one before.
        assert gaps[0] < gaps[1] < gaps[2], gaps
        # Signed in again under the same name: reachable by others.
        bob = await Client.connect(web_server.ws_url)
        await bob.sign_in("bob")
        await bob.send_json({"type": "StartConnection", "target": "alice"})
        await alice.page.wait_for_selector("#request-panel", state="visible")
        await bob.close()
    finally:
        await proxy.close()


async def test_a_page_whose_name_is_taken_over_goes_offline_and_stays_there(
    open_page, web_server
):
    alice = await open_page("alice")
    await alice.page.evaluate("window.p2p.config.reconnectBaseMs = 100")
    other = await Client.connect(web_server.ws_url)
    try:
        assert (await other.sign_in("alice"))["type"] == "SignedIn"
        assert await alice.wait_notice("alice was signed in from another tab")
        await alice.page.wait_for_selector("#sign-in-panel", state="visible")
        # No reconnecting: two pages would otherwise take the name in turns.
        await asyncio.sleep(1)
        assert await alice.page.get_attribute("#status", "data-state") == "error"
        assert await other.receive_nothing()
    finally:
        await other.close()


async def test_several_files_go_in_turn_and_either_side_can_cancel_one(
    open_page, tmp_path
):
    alice = await open_page("alice")
    bob = await open_page("bob")
    await connect_pages(alice, bob)
    first = payload_file(tmp_path, "first.bin", 2 * MIB)
    big = payload_file(tmp_path, "big.bin", 64 * MIB, seed=0)
    last = payload_file(tmp_path, "last.bin", 1 * MIB)
    await alice.send_files(first, big, last)

    await bob.wait_file("in", "first.bin")
    await bob.page.wait_for_function(
        "() => window.p2p.files().some((f) => f.name === 'big.bin' && f.bytes > 0)"
    )
    # The receiver cancels the file in progress; the next one follows.
    row = bob.page.locator(".transfer[data-direction=in]").filter(has_text="big.bin")
    await row.locator("button.cancel").click()
    cancelled = await alice.wait_file("out", "big.bin", state="cancelled")
    assert cancelled["note"] == "Cancelled by bob."
    await bob.wait_file("in", "last.bin")
    for name, path in (("first.bin", first), ("last.bin", last)):
        assert (
            await bob.sha256("in", name)
            == hashlib.sha256(path.read_bytes()).hexdigest()
        )

    # The sender cancels one.
    again = payload_file(tmp_path, "again.bin", 64 * MIB, seed=0)
    await alice.send_files(again)
    await bob.page.wait_for_function(
        "() => window.p2p.files().some((f) => f.name === 'again.bin' && f.bytes > 0)"
    )
    row = alice.page.locator(".transfer[data-direction=out]").filter(
        has_text="again.bin"
    )
    await row.locator("button.cancel").click()
    cancelled = await bob.wait_file("in", "again.bin", state="cancelled")
    assert cancelled["note"] == "Cancelled by alice."
    assert cancelled["bytes"] < 64 * MIB


async def test_the_whole_flow_works_from_the_keyboard(open_page):
    alice = await open_page("alice", sign_in=False)
    bob = await open_page("bob", sign_in=False)
    for client in (alice, bob):
        # The name field has the focus when the page opens.
        await client.page.keyboard.type(client.label)
        await client.page.keyboard.press("Enter")
        await client.page.wait_for_selector("#status[data-state=online]")
    # After signing in the focus waits in "Their name".
    await alice.page.keyboard.type("bob")
    await alice.page.keyboard.press("Enter")
    await bob.page.wait_for_selector("#request-panel", state="visible")
    # The request takes the focus on Accept.
    await bob.page.keyboard.press("Enter")
    await alice.wait_open()
    await bob.wait_open()
    # Once connected the focus is in the message field.
    await bob.page.wait_for_function(
        "() => document.activeElement.id === 'message-input'"
    )
    await bob.page.keyboard.type("typed, not clicked")
    await bob.page.keyboard.press("Enter")
    await alice.wait_message("typed, not clicked")
    # The file chooser is reachable with Tab.
    await bob.page.keyboard.press("Tab")
    await bob.page.keyboard.press("Tab")
    assert await bob.page.evaluate("document.activeElement.id") == "file-input"


async def test_a_connection_that_cannot_be_made_is_reported_in_plain_words(
    open_page, web_server
):
    alice = await open_page("alice")
    await alice.page.evaluate("window.p2p.config.connectTimeoutMs = 3000")
    robot = await Peer.sign_in(web_server.ws_url, "robot")
    robot.ice_blocked = True
    try:
        await alice.connect_to("robot")
        assert (await robot.next_event())["type"] == "StartConnection"
        await robot.accept("alice", protocol=WEB_CHANNEL_PROTOCOL)
        assert await alice.wait_notice("Could not connect to robot directly.")
        await alice.page.wait_for_selector("#connect-panel", state="visible")
    finally:
        await robot.close()
