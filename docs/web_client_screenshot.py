"""Take docs/web-client.png: two users connected, one sharing a screen.

Run from the repository root (it needs Chromium, like the browser tests)::

    PYTHONPATH=. .venv/bin/python docs/web_client_screenshot.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from tests.browsers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    collect_static,
    open_client,
)
from tests.servers import DaphneServer, base_environment, migrate

OUTPUT = Path(__file__).resolve().parent / "web-client.png"


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


if __name__ == "__main__":
    asyncio.run(main())
