"""Languages from the client's side, on SQLite and PostgreSQL: the booking keeps the language the client booked in
(Accept-Language, the page's switch, or the tenant file's `tenant.locale`), so its confirmation, its reschedule and
cancel emails and its reminders are written in it, whatever language a later request arrives in; pages and error
pages follow Accept-Language, and the tenant file's locale is checked when it is applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from admin.tenant_file import RolloutError, validate_tenant_document
from admin.tenant_yaml import load_tenant_file
from app import apply_tenant_file
from pages.routes import CSRF_COOKIE
from storage.database import Database
from storage.tables import bookings
from tests.conftest import FIXTURES, FixedClock, make_settings, start_client
from tests.fakes.smtp import FakeSmtpServer
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email
from tests.integration.test_invites import eventually, invitations
from tests.integration.test_reminders import run_at, with_reminders
from tests.integration.test_reminders import smtp as smtp  # a fixture
from workflows.request_emails import request_emails, request_variables
from workflows.templates import compose_email

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
AMERICAN = {"Accept-Language": "en-US,en;q=0.9"}


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def client_locale(database: Database, booking_id: str) -> str | None:
    async with database.read() as conn:
        return (await conn.execute(select(bookings.c.client_locale).where(bookings.c.id == booking_id))).scalar_one()


async def test_a_german_clients_booking_keeps_german_for_every_later_email_and_reminder(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Classic mode: the confirmation, the reschedule email and a reminder a day before.
    await with_reminders(database, tmp_path, smtp, monkeypatch, workflow=False)
    client = await start_client(database, tmp_path, clock)
    try:
        booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"), headers=GERMAN)
        assert booked.status == 201, await booked.text()
        booking = await booked.json()
        assert await client_locale(database, booking["id"]) == "de-DE"
        manage = booking["manage_url"].removeprefix("http://testserver")
        # The reschedule arrives from an English browser: the emails stay in the language the client booked in.
        moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"}, headers=AMERICAN)
        assert moved.status == 200, await moved.text()
    finally:
        await client.close()
    # The confirmation and reschedule emails are due when they were enqueued (the real clock); the reminder of the
    # new time a day before it. The old time's reminder was cancelled by the reschedule.
    await run_at(database, clock, (datetime.now(UTC) + timedelta(minutes=1)).replace(tzinfo=None).isoformat())
    by_subject = {str(mail.message["Subject"]): mail.message for mail in smtp.received}
    assert sorted(by_subject) == [
        "Bestätigt: Intro call am Dienstag, 24. November 2026, 15:00",
        "Erinnerung: Intro call am Mittwoch, 25. November 2026, 16:00",
        "Verschoben: Intro call am Mittwoch, 25. November 2026, 16:00",
    ], sorted(by_subject)
    confirmation, reminder, rescheduled = (by_subject[subject] for subject in sorted(by_subject))
    confirmation_text = text_of(confirmation)
    for german in (
        "Ihr Termin ist gebucht",
        "Hallo Dana Client,",
        "Wann: Dienstag, 24. November 2026, 15:00 bis 15:30",
        "Wo: Microsoft Teams-Besprechung",
        "Gastgeber: Alice Adams",
        "Verschieben oder absagen (http://testserver/m/",
    ):
        assert german in confirmation_text, (german, confirmation_text)
    assert "Mitteleuropäische Zeit" not in confirmation_text, "the client's zone is London's"
    assert "Vorher: Dienstag, 24. November 2026, 15:00." in text_of(rescheduled)
    assert "Zur Erinnerung" in text_of(reminder)
    # The invitation's words are German too (its times are UTC, as the standard has them).
    [calendar] = invitations(confirmation)
    description = str(calendar.walk("VEVENT")[0]["DESCRIPTION"])
    assert "Intro call mit Alice Adams" in description
    assert "Ort: Microsoft Teams-Besprechung" in description
    assert "Verschieben oder absagen: http://testserver/m/" in description


async def test_the_tenant_default_speaks_to_clients_whose_browser_asks_for_a_language_we_lack(
    database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    path = tenant_file_with_email(tmp_path, smtp, reminders=False)
    path.write_text(path.read_text().replace("tenant:\n", "tenant:\n  locale: de-DE\n", 1))
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    client: TestClient = await start_client(database, tmp_path, clock, run_workflows=True)
    french = {"Accept-Language": "fr-FR,fr;q=0.9"}
    try:
        page = await (await client.get(PAGE, params={"tz": "UTC", "date": "2026-11-24"}, headers=french)).text()
        assert '<html lang="de">' in page
        assert "Zeiten am Dienstag, 24. November" in page
        assert ">15:00</a>" in page
        # An English browser still gets English: the tenant's default is only the fallback.
        english = await (await client.get(PAGE, params={"tz": "UTC"}, headers=AMERICAN)).text()
        assert '<html lang="en">' in english
        booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"), headers=french)
        assert booked.status == 201, await booked.text()
        assert await client_locale(database, (await booked.json())["id"]) == "de-DE"
        await eventually(lambda: len(smtp.mailbox("dana@client.test")) == 1, "the confirmation")
        assert str(smtp.mailbox("dana@client.test")[0]["Subject"]).startswith("Bestätigt: Intro call am ")
    finally:
        await client.close()


async def test_pages_and_error_pages_follow_accept_language_and_the_switch_keeps_its_choice(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    await apply_tenant_file(database, make_settings(tmp_path), FIXTURES / "tenant.yaml", dry_run=False)
    client = await start_client(database, tmp_path, clock)
    try:
        missing = await client.get("/book/acme/nope", headers=GERMAN)
        assert missing.status == 404
        assert missing.headers["Content-Language"] == "de"
        html = await missing.text()
        assert "Diese Seite wurde nicht gefunden" in html
        assert "Diese Buchungsseite wurde nicht gefunden." in html, "the core's message, translated"
        # An American browser that picks Deutsch on the page: German, with their clock until they switch it.
        params = {"tz": "UTC", "date": "2026-11-24", "lang": "de"}
        switched = await (await client.get(PAGE, params=params, headers=AMERICAN)).text()
        assert '<html lang="de">' in switched
        assert "Zeiten am Dienstag, 24. November" in switched
        assert 'name="lang" value="de"' in switched, "the tz form keeps the choice"
        assert "lang=de" in switched.split('id="times-heading"', 1)[1], "time links keep it too"
        assert 'hreflang="en"' in switched, "and the switch offers English back"
        # The form's answer lands on the confirmation in German, and the booking is German.
        form = await client.get(PAGE, params={**params, "start": "2026-11-24T15:00:00+00:00"}, headers=AMERICAN)
        token = client.session.cookie_jar.filter_cookies(client.make_url("/")).get(CSRF_COOKIE)
        assert token is not None, await form.text()
        posted = await client.post(
            f"{PAGE}/bookings",
            data={
                "csrf_token": token.value,
                "start": "2026-11-24T15:00:00+00:00",
                "time_zone": "UTC",
                "lang": "de",
                "name": "Dana Client",
                "email": "dana@client.test",
                "answer_company": "Client Co",
            },
            headers=AMERICAN,
        )
        assert posted.status == 200, await posted.text()
        confirmation = await posted.text()
        assert "Ihr Termin ist gebucht." in confirmation
        assert "lang=de" in str(posted.url)
    finally:
        await client.close()


def test_the_tenant_files_locale_is_optional_and_checked(tmp_path: Path) -> None:
    assert load_tenant_file(FIXTURES / "tenant.yaml").tenant.locale is None, "files without it stay valid"
    document = yaml.safe_load((FIXTURES / "tenant.yaml").read_text())
    document["tenant"]["locale"] = "de_at"
    assert validate_tenant_document(document).tenant.locale == "de-AT"
    document["tenant"]["locale"] = "fr-FR"
    with pytest.raises(RolloutError) as refused:
        validate_tenant_document(document)
    assert "tenant.locale" in str(refused.value)
    assert "'fr-FR' is not a language Slotwise has" in str(refused.value)


def test_a_scheduling_requests_email_is_written_in_the_tenants_language() -> None:
    request = {
        "kind": "request",
        "id": "r1",
        "tenant_name": "Acme IT",
        "type_name": "Vor-Ort-Termin",
        "duration_minutes": 60,
        "time_zone": "Europe/Berlin",
        "window_starts_at": "2026-01-05T00:00:00+00:00",
        "window_ends_at": "2026-01-09T00:00:00+00:00",
        "expires_at": "2026-01-09T17:00:00+00:00",
        "client": {"name": "Dana", "email": "dana@client.test", "guests": []},
        "ticket": {"id": "7", "number": "T7"},
        "book_url": "https://book.example/r/x",
        "locale": "de-DE",
    }
    subject, body = request_emails("de")["request_sent"]
    email = compose_email(subject, body, request_variables(request, {}), "de-DE")
    assert email.subject == "Bitte wählen Sie einen Zeitpunkt: Vor-Ort-Termin (Ticket #T7)"
    for german in (
        "Acme IT möchte mit Ihnen einen Zeitpunkt für Ihren Termin Vor-Ort-Termin (60 Minuten) finden.",
        "Es geht um Ticket #T7.",
        "Angeboten werden Zeiten von Montag, 5. Januar 2026 bis Freitag, 9. Januar 2026.",
        "Der Link gilt bis Freitag, 9. Januar 2026, 18:00 (Mitteleuropäische Zeit (Berlin), UTC+01:00).",
        "https://book.example/r/x",
    ):
        assert german in email.text, (german, email.text)
