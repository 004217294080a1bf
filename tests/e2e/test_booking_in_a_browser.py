"""A real browser (Debian chromium via Playwright) books, reschedules and cancels on phone and desktop viewports."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright, expect

from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian chromium is not installed; scripts/test installs it with apt-get")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield launched
        await launched.close()


def base_of(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_client_books_reschedules_and_cancels_in_a_browser(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    try:
        context = await browser.new_context(viewport=VIEWPORTS[viewport], timezone_id="Europe/London", locale="en-GB")
        page = await context.new_page()
        await run_booking_journey(page, base_of(client))
        await context.close()
    finally:
        await client.close()


async def run_booking_journey(page: Page, base: str) -> None:
    await page.goto(f"{base}/book/acme/intro-call")
    # The page detects the browser's zone and shows times in it.
    await expect(page.get_by_label("Your time zone")).to_have_value("Europe/London")
    await expect(page.get_by_role("heading", name="Intro call")).to_be_visible()
    await page.get_by_role("link", name="Tuesday 24 November, 16 times available").click()
    await page.get_by_role("link", name="15:00", exact=True).click()
    await page.get_by_label("Your name").fill("Dana <b>Client</b>")
    await page.get_by_label("Email", exact=True).fill("dana@client.test")
    await page.get_by_label("Company name").fill("Client Co")
    await page.get_by_role("button", name="Book 15:00").click()
    await expect(page.get_by_role("status")).to_contain_text("You're booked")
    await expect(page.locator("dl.booking")).to_contain_text("Tuesday, 24 November 2026, 15:00")
    await expect(page.locator("dl.booking")).to_contain_text("Dana <b>Client</b>")

    await page.get_by_role("link", name="Reschedule").click()
    await page.get_by_role("link", name="Wednesday 25 November, 16 times available").click()
    await page.get_by_role("link", name="16:00", exact=True).click()
    await page.get_by_role("button", name="Confirm new time").click()
    await expect(page.get_by_role("status")).to_contain_text("moved")
    await expect(page.locator("dl.booking")).to_contain_text("Wednesday, 25 November 2026, 16:00")

    # Cancelling asks first, and asks why.
    await page.get_by_role("link", name="Cancel appointment").click()
    await expect(page.get_by_role("heading", name="Cancel this appointment?")).to_be_visible()
    await page.get_by_label("Reason for cancelling").fill("No longer needed")
    await page.get_by_role("button", name="Yes, cancel appointment").click()
    await expect(page.get_by_role("status")).to_contain_text("cancelled")


async def test_the_booking_page_is_keyboard_accessible_with_labelled_inputs(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    try:
        page = await browser.new_page(viewport=VIEWPORTS["phone"], locale="en-GB")
        await page.goto(
            f"{base_of(client)}/book/acme/intro-call?tz=UTC&date=2026-11-24&start=2026-11-24T15:00:00%2B00:00"
        )
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
        )
        assert unlabelled == []
        await page.keyboard.press("Tab")
        focused = await page.evaluate("() => document.activeElement.textContent")
        assert "Skip to content" in focused
        await page.get_by_label("Your name").focus()
        await page.keyboard.type("Kim Keys")
        await page.keyboard.press("Tab")
        await page.keyboard.type("kim@client.test")
        await page.keyboard.press("Tab")
        await page.keyboard.type("Keyboard Co")
        await page.get_by_role("button", name="Book 15:00").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status")).to_contain_text("You're booked")
        await page.close()
    finally:
        await client.close()
