"""Client journeys in Chromium: an American (en-US, 12-hour clock) client books, reschedules and cancels; so does a
German one (de-DE: German pages, 24-hour clock, and German emails); a client who loses a time while typing books one
of the times offered instead. Screenshots of each step are kept under
var/artifacts/pages/ for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from app import apply_tenant_file
from storage.database import Database
from tests.conftest import FIXTURES, FixedClock, apply_file, make_settings, start_client
from tests.e2e.test_booking_in_a_browser import VIEWPORTS, base_of, browser
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_booking_api import booking_body
from tests.integration.test_fanout import tenant_file_with_email
from tests.integration.test_invites import eventually, invitations

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


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_german_client_books_reschedules_and_cancels_in_german_with_24_hour_times(
    browser: Browser,
    sqlite_database: Database,
    tmp_path: Path,
    clock: FixedClock,
    viewport: str,
    smtp: FakeSmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    path = tenant_file_with_email(tmp_path, smtp, reminders=False)
    await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
    client = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
    # Chromium sends Accept-Language: de-DE for this locale.
    context = await browser.new_context(viewport=VIEWPORTS[viewport], timezone_id="Europe/Berlin", locale="de-DE")
    mailbox = "sam@client.test"
    try:
        page = await context.new_page()
        await page.goto(f"{base_of(client)}/book/acme/intro-call")
        await expect(page.locator("html")).to_have_attribute("lang", "de")
        await expect(page.get_by_label("Ihre Zeitzone")).to_have_value("Europe/Berlin")
        await expect(page.get_by_role("heading", name="November 2026")).to_be_visible()
        await expect(page.get_by_role("link", name="24-Stunden-Format verwenden")).to_have_count(0)
        await expect(page.get_by_role("link", name="12-Stunden-Format verwenden")).to_be_visible()
        await snap(page, f"journey-de-1-page-{viewport}")
        await page.get_by_role("link", name="Dienstag 24 November, 16 freie Zeitpunkte").click()
        await expect(page.get_by_role("heading", name="Zeiten am Dienstag, 24. November")).to_be_visible()
        # 15:00 UTC is 16:00 in Berlin, on the 24-hour clock.
        await page.get_by_role("link", name="16:00", exact=True).click()
        await expect(
            page.get_by_role("heading", name="Ihre Angaben für Dienstag, 24. November 2026, 16:00")
        ).to_be_visible()
        await page.get_by_label("Ihr Name").fill("Sam Kunde")
        await page.get_by_label("E-Mail", exact=True).fill(mailbox)
        await page.get_by_label("Company name").fill("Kunde GmbH")
        await snap(page, f"journey-de-2-details-{viewport}")
        await page.get_by_role("button", name="16:00 buchen").click()
        await expect(page.get_by_role("status")).to_contain_text("Ihr Termin ist gebucht.")
        await expect(page.locator("dl.booking")).to_contain_text("Dienstag, 24. November 2026, 16:00")
        await expect(page.locator("dl.booking")).to_contain_text("Microsoft Teams-Besprechung")
        await expect(page.get_by_role("heading", name="Zum Kalender hinzufügen")).to_be_visible()
        await snap(page, f"journey-de-3-confirmation-{viewport}")

        await page.get_by_role("link", name="Verschieben").click()
        await expect(page.get_by_role("heading", name="Verschieben: Intro call")).to_be_visible()
        await page.get_by_role("link", name="Mittwoch 25 November, 16 freie Zeitpunkte").click()
        await page.get_by_role("link", name="17:00", exact=True).click()
        await page.get_by_role("button", name="Neuen Zeitpunkt bestätigen").click()
        await expect(page.get_by_role("status")).to_contain_text("Ihr Termin wurde verschoben.")
        await expect(page.locator("dl.booking")).to_contain_text("Mittwoch, 25. November 2026, 17:00")

        await page.get_by_role("link", name="Termin absagen").click()
        await snap(page, f"journey-de-4-cancel-{viewport}")
        await page.get_by_role("button", name="Ja, Termin absagen").click()
        await expect(page.get_by_role("heading", name="Diesen Termin absagen?")).to_be_visible()
        await page.get_by_label("Grund für die Absage").fill("Hat sich erledigt")
        await page.get_by_role("button", name="Ja, Termin absagen").click()
        await expect(page.get_by_role("status")).to_contain_text("Dieser Termin ist abgesagt.")
        await snap(page, f"journey-de-5-cancelled-{viewport}")
        await eventually(lambda: len(smtp.mailbox(mailbox)) == 3, "the three emails")
    finally:
        await context.close()
        await client.close()

    # The runner sends each change's email as its own run, so they may arrive in any order.
    by_subject = {str(message["Subject"]): message for message in smtp.mailbox(mailbox)}
    assert sorted(by_subject) == [
        "Abgesagt: Intro call am Mittwoch, 25. November 2026, 17:00",
        "Bestätigt: Intro call am Dienstag, 24. November 2026, 16:00",
        "Verschoben: Intro call am Mittwoch, 25. November 2026, 17:00",
    ], sorted(by_subject)
    cancelled, confirmation, moved = (by_subject[subject] for subject in sorted(by_subject))
    texts = []
    for message in (confirmation, moved, cancelled):
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        texts.append(str(part.get_content()))
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        assert '<html lang="de">' in str(html.get_content())
    assert "Hallo Sam Kunde," in texts[0]
    assert (
        "Ihr Termin Intro call mit Alice Adams ist bestätigt: Dienstag, 24. November 2026, 16:00, 30 Minuten."
        in texts[0]
    )
    assert "Wann: Dienstag, 24. November 2026, 16:00 bis 16:30" in texts[0]
    assert "Mitteleuropäische" in texts[0], "the zone is named in German"
    assert "Verschieben oder absagen (http" in texts[0]
    assert "wurde auf Mittwoch, 25. November 2026, 17:00 verschoben." in texts[1]
    assert "Vorher: Dienstag, 24. November 2026, 16:00." in texts[1]
    assert "ist abgesagt." in texts[2]
    assert "Grund: Hat sich erledigt" in texts[2]
    for text in texts:
        for english in ("You're booked", "Hi Sam", "Reschedule or cancel", " to 1", "When:"):
            assert english not in text, (english, text)
    [invite] = invitations(confirmation)
    description = str(invite.walk("VEVENT")[0]["DESCRIPTION"])
    assert "Ort: Microsoft Teams-Besprechung" in description
    assert "Verschieben oder absagen:" in description
    assert str(invitations(cancelled)[0]["METHOD"]) == "CANCEL"


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
