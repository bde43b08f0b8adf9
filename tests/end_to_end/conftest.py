"""Fixtures the end-to-end tests share."""

import pytest
from playwright.async_api import async_playwright

from tests.browsers import CHROMIUM, CHROMIUM_ARGS, require_chromium


@pytest.fixture
async def browser():
    """Debian's Chromium, headless, driven by Playwright (fails, never skips,
    when it is not installed)."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()
