"""Debian's Chromium, driven by Playwright, running the web client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.servers import ROOT, base_environment

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Camera, microphone and screen prompts answered yes; fake devices
    # stand in for the screen, which a headless browser does not have.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
    # Chromium hides host addresses behind mDNS names that aiortc on this
    # machine cannot resolve; tests need the plain addresses.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
MISSING_CHROMIUM = f"""
{"!" * 72}
Chromium is missing at {CHROMIUM}: the browser tests cannot run.
Install Debian's package as root:  apt-get update && apt-get install -y chromium
(scripts/test does this for you), or point CHROMIUM at another binary.
{"!" * 72}"""
ARTIFACTS = ROOT / "test-artifacts"


def require_chromium() -> None:
    """Fail loudly (never skip) when the browser is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)


def collect_static() -> None:
    """Collect static files: servers with DEBUG off serve only collected ones."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=base_environment(),
        check=True,
    )


@dataclass
class WebClient:
    """One browser page of the web client, as one user."""

    page: Page
    label: str
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")
        # A policy violation means a feature silently broke.
        if "Content Security Policy" in message.text:
            self.errors.append(message.text)

    async def sign_in(self, name: str, password: str = "") -> None:
        await self.page.fill("#username", name)
        if password:
            await self.page.fill("#password", password)
        await self.page.click("#sign-in-button")
        await self.page.wait_for_selector("#status[data-state=online]")

    async def connect_to(self, name: str) -> float:
        """Ask ``name`` for a connection; return the time of the click."""
        await self.page.fill("#peer-name", name)
        clicked = time.perf_counter()
        await self.page.click("#connect-button")
        return clicked

    async def accept(self) -> None:
        await self.page.wait_for_selector("#request-panel", state="visible")
        await self.page.click("#accept-button")

    async def decline(self) -> None:
        await self.page.wait_for_selector("#request-panel", state="visible")
        await self.page.click("#decline-button")

    async def wait_open(self, timeout: float = 20) -> None:
        await self.page.wait_for_selector(
            "#session-tools", state="visible", timeout=timeout * 1000
        )

    async def send_files(self, *paths: Path) -> None:
        await self.page.set_input_files("#file-input", [str(p) for p in paths])

    async def send_text(self, text: str) -> None:
        await self.page.fill("#message-input", text)
        await self.page.press("#message-input", "Enter")

    async def wait_file(
        self, direction: str, name: str, state: str = "done", timeout: float = 30
    ) -> dict:
        """Wait until a transfer reaches ``state``; return its summary."""
        await self.page.wait_for_function(
            """([direction, name, state]) => window.p2p.files().some(
                (f) => f.direction === direction && f.name === name
                    && f.state === state)""",
            arg=[direction, name, state],
            timeout=timeout * 1000,
        )
        return await self.file(direction, name)

    async def file(self, direction: str, name: str) -> dict:
        return await self.page.evaluate(
            """([direction, name]) => {
                const f = window.p2p.files().find(
                    (f) => f.direction === direction && f.name === name);
                return {...f, blob: undefined};
            }""",
            [direction, name],
        )

    async def sha256(self, direction: str, name: str) -> str:
        """SHA-256 of a transfer's bytes, computed in the page."""
        return await self.page.evaluate(
            """async ([direction, name]) => {
                const f = window.p2p.files().find(
                    (f) => f.direction === direction && f.name === name);
                const digest = await crypto.subtle.digest(
                    "SHA-256", await f.blob.arrayBuffer());
                return Array.from(new Uint8Array(digest),
                    (b) => b.toString(16).padStart(2, "0")).join("");
            }""",
            [direction, name],
        )

    async def progress(self, direction: str, name: str) -> tuple[str, str]:
        """The progress row the user sees: (percent, detail text)."""
        row = self.page.locator(f".transfer[data-direction={direction}]").filter(
            has_text=name
        )
        return (
            await row.get_attribute("data-percent") or "",
            await row.locator(".detail").inner_text(),
        )

    async def wait_notice(self, text: str, timeout: float = 15) -> str:
        notice = self.page.locator("#notice")
        await notice.filter(has_text=text).wait_for(timeout=timeout * 1000)
        return await notice.inner_text()

    async def wait_message(self, text: str, timeout: float = 15) -> None:
        await (
            self.page.locator("#messages li")
            .filter(has_text=text)
            .first.wait_for(timeout=timeout * 1000)
        )

    async def save_artifacts(self, prefix: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        log = ARTIFACTS / f"{prefix}-{self.label}.log"
        log.write_text("\n".join(self.console + self.errors) + "\n")
        if not self.page.is_closed():
            with contextlib.suppress(Exception):
                await self.page.screenshot(
                    path=ARTIFACTS / f"{prefix}-{self.label}.png", full_page=True
                )


async def open_client(browser: Browser, url: str, label: str) -> WebClient:
    """Open the web client in a fresh context: its own user, its own storage."""
    # A phone-sized window: the layout under test is the one phones get.
    context = await browser.new_context(viewport={"width": 412, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    client = WebClient(page=page, label=label)
    await page.goto(url)
    return client


class TcpProxy:
    """A TCP relay in front of the server that can cut and refuse connections.

    Lets a test take the page's server connection away without stopping the
    server, and see when the page tries again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse = 0
        self.accepted_at: list[float] = []
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:
        self.accepted_at.append(time.monotonic())
        if self.refuse > 0:
            self.refuse -= 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def drop_all(self) -> None:
        """Cut every open connection, as a network failure would."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
