"""The web client in a real Chromium with the Android app's double.

``tests.android_app`` plays the shipped app (its signaling, its HDR framing,
its string messages); the page is driven as a person would drive it, in both
roles: the browser asks and the app accepts, and the other way round.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.android_app import CHUNK_BYTES, AndroidApp
from tests.browsers import WebClient, open_client
from tests.end_to_end import test_browser
from tests.end_to_end.test_browser import tiny_png

# The browser tests' fixtures: a collected server, Chromium, pages.
static_files = test_browser.static_files
web_server = test_browser.web_server
open_page = test_browser.open_page

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


async def browser_asks(page: WebClient, phone: AndroidApp) -> None:
    await page.connect_to(phone.name)
    assert await phone.next_request() == page.label
    await phone.accept(page.label)
    await phone.open()
    await page.wait_open()


async def app_asks(page: WebClient, phone: AndroidApp) -> None:
    await phone.request(page.label)
    await page.accept()
    channel = await phone.open()
    await page.wait_open()
    # The page made this channel; the app takes whatever arrives.
    assert channel.label == "p2p"


async def send_to_app(
    page: WebClient, phone: AndroidApp, path: Path
) -> tuple[object, float]:
    """Choose ``path`` in the page; return what the app got and the seconds
    from choosing it to the app holding all of it."""
    started = time.perf_counter()
    await page.send_files(path)
    message = await phone.next_message(timeout=60)
    return message, message.completed_at - started


async def exchange_with_the_app(
    page: WebClient, phone: AndroidApp, tmp_path: Path, capsys
) -> None:
    """What a person would try first, in either role."""
    # The page tells the person what it is connected to.
    await page.page.wait_for_selector("#app-peer-hint", state="visible")
    assert await page.page.is_hidden("#share-button")

    # App to page: text.
    phone.send_text("hi from the phone ✓")
    await page.wait_message("hi from the phone ✓")

    # Page to app: text, as TEXT.
    await page.send_text("héllo ✓")
    text = await phone.next_message()
    assert (text.type, text.text, text.flags) == ("TEXT", "héllo ✓", "0")

    # Page to app: a PNG arrives as IMAGE, its bytes equal, mime and name.
    png = tiny_png()
    image, _ = await send_to_app(page, phone, write(tmp_path, "dot.png", png))
    assert (image.type, image.mime, image.name) == ("IMAGE", "image/png", "dot.png")
    assert image.payload == png
    # Chunks went as binary messages, which the app reads like any other.
    assert image.binary
    await page.wait_file("out", "dot.png")

    # Page to app: 100 KB of anything else arrives as FILE.
    payload = os.urandom(100_000)
    got, seconds = await send_to_app(
        page, phone, write(tmp_path, "data 1|2.bin", payload)
    )
    assert got.type == "FILE"
    assert got.name == "data 1_2.bin"  # "|" escaped as the app does
    assert sha256(got.payload) == sha256(payload)
    sent = await page.wait_file("out", "data 1|2.bin")
    assert (await page.progress("out", "data 1|2.bin"))[1].startswith("Sent")
    with capsys.disabled():
        print(
            f"\nbrowser to app double, 100 KB FILE: {seconds * 1000:.0f} ms from"
            f" choosing it to the app holding it ({100_000 / seconds / 1e6:.2f} MB/s);"
            f" the page's own clock {sent['seconds'] * 1000:.0f} ms"
        )

    # App to page: an image sent as the app sends it (string chunks). The
    # browser drops them; the page says so and shows nothing.
    phone.send("IMAGE", png, mime="image/*", name="photo.png")
    await page.wait_message("phone sent something this browser could not receive")
    assert await page.page.locator(".transfer img").count() == 0
    # And stays in step for what follows.
    phone.send_text("still here")
    await page.wait_message("still here")


async def test_the_browser_asks_and_the_app_accepts(
    open_page, web_server, tmp_path, capsys
):
    page = await open_page("alice")
    phone = await AndroidApp.sign_in(web_server.ws_url, "phone")
    try:
        await browser_asks(page, phone)
        # The app's channel: no web protocol, so the page knows at once.
        await exchange_with_the_app(page, phone, tmp_path, capsys)

        # 5 MiB, browser to app: the page keeps its backpressure.
        payload = os.urandom(5 * MIB)
        got, seconds = await send_to_app(
            page, phone, write(tmp_path, "five.bin", payload)
        )
        assert got.type == "FILE" and got.name == "five.bin"
        assert sha256(got.payload) == sha256(payload)
        await page.wait_file("out", "five.bin")
        with capsys.disabled():
            print(
                f"\nbrowser to app double, 5 MiB FILE: {seconds:.2f} s"
                f" ({5 * MIB / seconds / 1e6:.1f} MB/s)"
            )
    finally:
        await phone.close()


async def test_the_app_asks_and_the_browser_accepts(
    open_page, web_server, tmp_path, capsys
):
    page = await open_page("alice")
    phone = await AndroidApp.sign_in(web_server.ws_url, "phone")
    try:
        await app_asks(page, phone)
        # The page made the channel and hears no hello: the app.
        await exchange_with_the_app(page, phone, tmp_path, capsys)
        # Nothing but HDR chunks went to the app (no hello, no JSON).
        assert phone.reassembler.ignored == 0

        # A file likely too big for a phone asks first; a larger one is
        # refused (the limits lowered so the test stays small).
        await page.page.evaluate(
            "Object.assign(window.p2p.config,"
            " {appWarnBytes: 50000, appMaxBytes: 150000})"
        )

        await page.send_files(write(tmp_path, "huge.bin", os.urandom(200_000)))
        await page.wait_message("huge.bin was not sent")

        payload = os.urandom(100_000)
        await page.send_files(write(tmp_path, "big.bin", payload))
        row = page.page.locator(".transfer[data-direction=out]").filter(
            has_text="big.bin"
        )
        await (
            row.locator(".detail")
            .filter(has_text="may be too big for a phone")
            .wait_for()
        )
        assert phone.messages.empty()
        await row.locator("button.send-anyway").click()
        got = await phone.next_message()
        assert (got.name, sha256(got.payload)) == ("big.bin", sha256(payload))

        # Declined, nothing goes.
        await page.send_files(write(tmp_path, "other.bin", os.urandom(100_000)))
        other = page.page.locator(".transfer[data-direction=out]").filter(
            has_text="other.bin"
        )
        await other.locator("button.cancel").click()
        assert (await page.wait_file("out", "other.bin", state="cancelled"))[
            "note"
        ] == "Not sent."
        phone.send_text("after")
        await page.wait_message("after")
        assert phone.messages.empty()
    finally:
        await phone.close()


async def test_files_from_the_app_arrive_whole_or_are_reported_never_damaged(
    open_page, web_server, tmp_path
):
    page = await open_page("alice")
    phone = await AndroidApp.sign_in(web_server.ws_url, "phone")
    try:
        await browser_asks(page, phone)

        # Bytes that are valid UTF-8 survive string messages: a text file
        # arrives, under the name from the flags, offered for saving.
        notes = ("Reisenotizen: Zürich → Genève\n" * 2000).encode()
        assert len(notes) > 3 * CHUNK_BYTES
        phone.send("FILE", notes, mime="text/plain", name="notes.txt")
        await page.wait_file("in", "notes.txt")
        assert await page.sha256("in", "notes.txt") == sha256(notes)
        row = page.page.locator(".transfer[data-direction=in]").filter(
            has_text="notes.txt"
        )
        assert await row.locator("a.save").get_attribute("download") == "notes.txt"

        # An image in binary chunks (an app that sent Buffer(…, true)) is
        # shown and saved.
        png = tiny_png()
        phone.send("IMAGE", png, mime="image/png", name="dot.png", binary=True)
        await page.wait_file("in", "dot.png")
        assert await page.sha256("in", "dot.png") == sha256(png)
        await page.page.locator(".transfer img").first.wait_for()

        # A file of which only some chunks are UTF-8: the rest never
        # reaches the page, and the page says so instead of saving a
        # damaged file.
        mixed = b"a" * CHUNK_BYTES + b"\xff\xfe" * (CHUNK_BYTES // 2) + b"z" * 10
        phone.send("FILE", mixed, name="mixed.bin")
        await page.wait_file("in", "mixed.bin", state="failed")
        await page.wait_message("mixed.bin from phone could not be received")
        message = (
            await page.page.locator("#messages li")
            .filter(has_text="mixed.bin from phone")
            .inner_text()
        )
        assert "open this page in the phone's browser" in message
        assert await page.page.locator("a.save[download='mixed.bin']").count() == 0
    finally:
        await phone.close()


@pytest.fixture
def turn_web_server(start_server, static_files):
    # Credentials valid for 4 s are pushed again every 3.2 s. Nothing
    # listens at the TURN address: this is about what the page uses.
    return start_server(
        SIGNALING_TURN_URLS="turn:192.0.2.1:3478?transport=udp",
        SIGNALING_TURN_SECRET="turn-test-secret-0123456789",
        SIGNALING_TURN_CREDENTIAL_TTL_SECONDS="4",
    )


# Keeps every peer connection the page makes, to ask the browser which ICE
# servers each one was given.
KEEP_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
})();
"""


async def test_the_next_connection_uses_the_ice_servers_pushed_to_the_page(
    browser, turn_web_server
):
    page = await open_client(browser, turn_web_server.http_url + "/app/", "alice")
    await page.page.add_init_script(KEEP_PEER_CONNECTIONS)
    await page.page.reload()
    frames: list[dict] = []
    pushed = asyncio.Event()

    def on_frame(payload: str | bytes) -> None:
        frame = json.loads(payload)
        frames.append(frame)
        if frame.get("type") == "IceServers":
            pushed.set()

    # The page's own socket, watched from outside.
    page.page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    await page.sign_in("alice")
    await asyncio.wait_for(pushed.wait(), 15)

    def usernames(kind: str) -> list[str]:
        return [
            entry["username"]
            for frame in frames
            if frame["type"] == kind
            for entry in frame["data"]["iceServers"]
            if "username" in entry
        ]

    (signed_in,) = usernames("SignedIn")
    phone = await AndroidApp.sign_in(turn_web_server.ws_url, "phone")
    try:
        await browser_asks(page, phone)
        # The browser's own view of the connection's ICE servers: the
        # credentials pushed last, not those from signing in.
        used = await page.page.evaluate(
            """() => window.peerConnections.at(-1).getConfiguration().iceServers
                .filter((s) => s.username).map((s) => s.username)"""
        )
        assert used and signed_in not in used
        assert set(used) <= set(usernames("IceServers")), (used, frames)
        # Still the phone's peer: the connection works.
        phone.send_text("over the refreshed connection")
        await page.wait_message("over the refreshed connection")
    finally:
        await phone.close()
        await page.page.context.close()
