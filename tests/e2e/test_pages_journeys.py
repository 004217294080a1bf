"""Client journeys in Chromium: an American (en-US, 12-hour clock) client books, reschedules and cancels; a client
who loses a time while typing books one of the times offered instead. Screenshots of each step are kept under
var/artifacts/pages/ for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, start_client
from tests.e2e.test_booking_in_a_browser import VIEWPORTS, base_of, browser
from tests.integration.test_booking_api import booking_body

__all__ = ["browser"]

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "pages"


async def snap(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_an_american_client_books_reschedules_and_cancels_with_12_hour_times(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    context = await browser.new_context(viewport=VIEWPORTS[viewport], timezone_id="America/Chicago", locale="en-US")
    try:
        page = await context.new_page()
        await page.goto(f"{base_of(client)}/book/acme/intro-call")
        await expect(page.get_by_label("Your time zone")).to_have_value("America/Chicago")
        await expect(page.get_by_role("heading", name="November 2026")).to_be_visible()
        await snap(page, f"journey-us-1-page-{viewport}")
        await page.get_by_role("link", name="Tuesday 24 November, 16 times available").click()
        await expect(page.get_by_role("heading", name="Times on Tuesday, November 24")).to_be_visible()
        # 15:00 UTC is 9:00 AM in Chicago.
        await page.get_by_role("link", name="9:00 AM", exact=True).click()
        await page.get_by_label("Your name").fill("Sam Client")
        await page.get_by_label("Email", exact=True).fill("sam@client.test")
        await page.get_by_label("Company name").fill("Client Co")
        await snap(page, f"journey-us-2-details-{viewport}")
        await page.get_by_role("button", name="Book 9:00 AM").click()
        await expect(page.get_by_role("status")).to_contain_text("You're booked")
        await expect(page.locator("dl.booking")).to_contain_text("Tuesday, November 24, 2026, 9:00 AM")
        await snap(page, f"journey-us-3-confirmation-{viewport}")

        await page.get_by_role("link", name="Reschedule").click()
        await page.get_by_role("link", name="Wednesday 25 November, 16 times available").click()
        await page.get_by_role("link", name="10:00 AM", exact=True).click()
        await page.get_by_role("button", name="Confirm new time").click()
        await expect(page.get_by_role("status")).to_contain_text("moved")
        await expect(page.locator("dl.booking")).to_contain_text("Wednesday, November 25, 2026, 10:00 AM")

        await page.get_by_role("link", name="Cancel appointment").click()
        await snap(page, f"journey-us-4-cancel-{viewport}")
        # The browser's own check asks for a reason before anything is sent.
        await page.get_by_role("button", name="Yes, cancel appointment").click()
        await expect(page.get_by_role("heading", name="Cancel this appointment?")).to_be_visible()
        await page.get_by_label("Reason for cancelling").fill("Found the answer")
        await page.get_by_role("button", name="Yes, cancel appointment").click()
        await expect(page.get_by_role("status")).to_contain_text("cancelled")
        await snap(page, f"journey-us-5-cancelled-{viewport}")
    finally:
        await context.close()
        await client.close()


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_client_who_loses_a_time_mid_form_books_an_offered_one(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock, viewport: str
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    context = await browser.new_context(viewport=VIEWPORTS[viewport], timezone_id="Europe/London", locale="en-GB")
    try:
        page = await context.new_page()
        await page.goto(f"{base_of(client)}/book/acme/intro-call?date=2026-11-24")
        await page.get_by_role("link", name="15:00", exact=True).click()
        await page.get_by_label("Your name").fill("Lee Late")
        await page.get_by_label("Email", exact=True).fill("lee@client.test")
        await page.get_by_label("Company name").fill("Late Co")
        # Meanwhile someone else books 15:00.
        taken = await client.post("/book/acme/intro-call/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
        assert taken.status == 201
        await page.get_by_role("button", name="Book 15:00").click()
        await expect(page.get_by_role("alert")).to_contain_text("Someone booked that time a moment ago")
        await expect(page.get_by_role("button", name="Book 15:00")).to_have_count(0)
        offered = page.get_by_role("button", name="Book 15:30")
        await expect(offered).to_be_focused()
        await expect(page.get_by_label("Your name")).to_have_value("Lee Late")
        await snap(page, f"journey-lost-time-{viewport}")
        await offered.click()
        await expect(page.get_by_role("status")).to_contain_text("You're booked")
        await expect(page.locator("dl.booking")).to_contain_text("Tuesday, 24 November 2026, 15:30")
    finally:
        await context.close()
        await client.close()


async def test_a_server_side_field_error_is_focused_at_its_field_on_a_phone(
    browser: Browser, sqlite_database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    await apply_file(sqlite_database, FIXTURES / "tenant.yaml")
    client = await start_client(sqlite_database, tmp_path, clock)
    context = await browser.new_context(viewport=VIEWPORTS["phone"], timezone_id="Europe/London", locale="en-GB")
    try:
        page = await context.new_page()
        await page.goto(f"{base_of(client)}/book/acme/intro-call?date=2026-11-24")
        await page.get_by_role("link", name="15:00", exact=True).click()
        await page.get_by_label("Your name").fill("Gus Guest")
        await page.get_by_label("Email", exact=True).fill("gus@client.test")
        await page.get_by_label("Company name").fill("Guest Co")
        # The browser cannot check a list of addresses; the server does, and answers next to the field.
        await page.get_by_label("Invite guests (emails, comma separated)").fill("pat@client.test, not-an-address")
        await page.get_by_role("button", name="Book 15:00").click()
        guests = page.get_by_label("Invite guests (emails, comma separated)")
        await expect(guests).to_be_focused()
        await expect(guests).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#guests-error")).to_contain_text("not-an-address")
        await expect(page.locator("#guests-error")).to_be_in_viewport()
        await snap(page, "journey-field-error-phone")
        await guests.fill("pat@client.test")
        await page.get_by_role("button", name="Book 15:00").click()
        await expect(page.get_by_role("status")).to_contain_text("You're booked")
        await expect(page.locator("dl.booking")).to_contain_text("pat@client.test")
    finally:
        await context.close()
        await client.close()
