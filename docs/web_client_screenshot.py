"""Take the web client's screenshots.

- docs/web-client.png: two web clients connected, one sharing a screen;
- docs/web-client-app.png: a browser with the Android app (its aiortc double,
  tests/android_app.py), files and text both ways.

Run from the repository root (it needs Chromium, like the browser tests);
name one of them (``web``, ``app``) to take only that one::

    PYTHONPATH=. .venv/bin/python docs/web_client_screenshot.py [web|app]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from tests.android_app import AndroidApp
from tests.browsers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    collect_static,
    open_client,
)
from tests.servers import DaphneServer, base_environment, migrate

DOCS = Path(__file__).resolve().parent
OUTPUT = DOCS / "web-client.png"
APP_OUTPUT = DOCS / "web-client-app.png"


async def main() -> None:
    work = Path(tempfile.mkdtemp())
    database_url = f"sqlite:///{work / 'db.sqlite3'}"
    migrate(database_url)
    collect_static()
    server = DaphneServer(
        env=base_environment(DATABASE_URL=database_url), log_path=work / "daphne.log"
    )
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            url = server.http_url + "/app/"
            wanted = set(sys.argv[1:]) or {"web", "app"}
            if "app" in wanted:
                await app_session(browser, server, work)
            if "web" not in wanted:
                await browser.close()
                return
            alice = await open_client(browser, url, "alice")
            bob = await open_client(browser, url, "bob")
            await alice.sign_in("alice")
            await bob.sign_in("bob")
            await alice.connect_to("bob")
            await bob.accept()
            await alice.wait_open()
            await bob.wait_open()
            await bob.page.wait_for_selector("#share-button", state="visible")
            await alice.send_text("Here are the photos from Saturday")
            await bob.send_text("Thanks! Sharing my screen so you can see the draft")
            photos = work / "holiday-photos.zip"
            photos.write_bytes(bytes(6_000_000))
            notes = work / "notes.pdf"
            notes.write_bytes(bytes(300_000))
            await alice.send_files(photos, notes)
            await alice.wait_file("out", "notes.pdf")
            await bob.page.click("#share-button")
            await alice.page.wait_for_function(
                "() => document.querySelector('#remote-screen').videoWidth > 0"
            )
            await asyncio.sleep(1)
            await alice.page.screenshot(path=OUTPUT, full_page=True)
            await browser.close()
    finally:
        server.stop()


async def app_session(browser, server, work: Path) -> None:
    """alice's browser with bob's phone running the Android app."""
    alice = await open_client(browser, server.http_url + "/app/", "alice")
    await alice.sign_in("alice")
    phone = await AndroidApp.sign_in(server.ws_url, "bob")
    try:
        await alice.connect_to("bob")
        await phone.next_request()
        await phone.accept("alice")
        await phone.open()
        await alice.wait_open()
        phone.send_text("Hi! Can you send me the photo and the slides?")
        await alice.wait_message("Can you send me")
        await alice.send_text("Here they are")
        await phone.next_message()
        photo = work / "beach.jpg"
        photo.write_bytes(b"\xff\xd8\xff" + os.urandom(900_000))
        slides = work / "slides.pdf"
        slides.write_bytes(os.urandom(2_400_000))
        await alice.send_files(photo, slides)
        await phone.next_message()
        await phone.next_message()
        await alice.wait_file("out", "slides.pdf")
        # As the app sends it: string chunks, which the browser drops.
        phone.send(
            "IMAGE", photo.read_bytes()[:60_000], mime="image/*", name="sunset.jpg"
        )
        await alice.wait_message("could not receive")
        phone.send_text("Got both, thanks!")
        await alice.wait_message("Got both")
        await alice.page.screenshot(path=APP_OUTPUT, full_page=True)
    finally:
        await phone.close()
        await alice.page.context.close()


if __name__ == "__main__":
    asyncio.run(main())
