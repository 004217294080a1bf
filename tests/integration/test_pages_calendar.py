"""The confirmation page's add-to-calendar links (Google, Outlook.com, Office 365, an .ics download) and the join
link once the booking's workflow made an online meeting."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from urllib.parse import parse_qs, urlsplit

import icalendar
from aiohttp.test_utils import TestClient

from storage.database import Database
from storage.tables import tenants, workflow_jobs
from tests.integration.test_booking_api import PAGE, booking_body

JOIN = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0"


async def book(client: TestClient) -> tuple[dict[str, object], str]:
    booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00"))
    assert booked.status == 201
    body = await booked.json()
    return body, str(body["manage_url"]).removeprefix("http://testserver")


def calendar_links(html: str) -> dict[str, str]:
    section = html.split('id="calendar-heading"', 1)[1].split("</section>", 1)[0]
    return {label: unescape(url) for url, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)(?:<span|</a>)', section)}


async def test_the_confirmation_offers_each_calendar_without_leaking_the_manage_link(client: TestClient) -> None:
    body, manage = await book(client)
    html = await (await client.get(manage, params={"booked": "1", "tz": "UTC"})).text()
    links = calendar_links(html)
    assert set(links) == {"Google Calendar", "Outlook.com", "Office 365", "Apple Calendar and others (.ics file)"}
    google = urlsplit(links["Google Calendar"])
    assert (google.scheme, google.netloc, google.path) == ("https", "calendar.google.com", "/calendar/render")
    query = parse_qs(google.query)
    assert query["action"] == ["TEMPLATE"]
    assert query["dates"] == ["20261124T150000Z/20261124T153000Z"]
    assert query["text"] == ["Intro call with Alice Adams"]
    for label in ("Outlook.com", "Office 365"):
        outlook = parse_qs(urlsplit(links[label]).query)
        assert outlook["startdt"] == ["2026-11-24T15:00:00Z"]
        assert outlook["enddt"] == ["2026-11-24T15:30:00Z"]
        assert outlook["rru"] == ["addevent"]
    assert urlsplit(links["Outlook.com"]).netloc == "outlook.live.com"
    assert urlsplit(links["Office 365"]).netloc == "outlook.office.com"
    token = manage.removeprefix("/m/")
    for label in ("Google Calendar", "Outlook.com", "Office 365"):
        assert token not in links[label], "a bearer link never goes to a third party"
    assert "Join the meeting" not in html, "no join link is known yet"

    ics = await client.get(links["Apple Calendar and others (.ics file)"])
    assert ics.status == 200
    assert ics.content_type == "text/calendar"
    assert ics.headers["Content-Disposition"] == 'attachment; filename="appointment.ics"'
    calendar = icalendar.Calendar.from_ical(await ics.read())
    assert calendar["METHOD"] == "PUBLISH"
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]) == f"{body['id']}@slotwise", "the same UID as the emailed invitation"
    assert event.decoded("DTSTART") == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    for required in ("DTSTAMP", "SUMMARY", "SEQUENCE"):
        assert required in event
    described = re.search(r"Reschedule or cancel: http://testserver(/m/\S+)", str(event["DESCRIPTION"]))
    assert described, event["DESCRIPTION"]
    opened = await client.get(described.group(1))
    assert opened.status == 200, "the file's manage link opens this booking"
    assert "Intro call" in await opened.text()


async def test_the_join_link_is_shown_once_the_meeting_exists(client: TestClient, tenant_db: Database) -> None:
    body, manage = await book(client)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    tenant_id = await _tenant_id(tenant_db)
    # What the create_event step records when Microsoft 365 made a Teams meeting (workflows/steps.py).
    async with tenant_db.write() as conn:
        await conn.execute(
            workflow_jobs.insert().values(
                tenant_id=tenant_id,
                booking_id=body["id"],
                run_key=f"{body['id']}:client_scheduled:1",
                step=0,
                kind="create_event",
                idempotency_key=f"{body['id']}:test:create_event",
                payload={},
                state="completed",
                attempts=1,
                max_attempts=5,
                run_after=now,
                last_error="",
                output={"event_id": "evt-1", "join_url": JOIN},
                created_at=now,
                updated_at=now,
            )
        )
    html = await (await client.get(manage, params={"tz": "UTC"})).text()
    assert f'<a href="{JOIN}" rel="noopener">Join the meeting</a>' in html
    google = parse_qs(urlsplit(calendar_links(html)["Google Calendar"]).query)
    assert google["location"] == [JOIN]
    ics = icalendar.Calendar.from_ical(await (await client.get(f"{manage}/invite.ics")).read())
    assert str(ics.walk("VEVENT")[0]["LOCATION"]) == JOIN


async def test_a_cancelled_booking_offers_no_calendar(client: TestClient) -> None:
    _body, manage = await book(client)
    cancelled = await client.post(f"{manage}/cancel", json={"reason": "no"})
    assert cancelled.status == 200
    html = await (await client.get(manage)).text()
    assert "Add to your calendar" not in html
    ics = await client.get(f"{manage}/invite.ics")
    assert ics.status == 410
    assert "cancelled" in (await ics.text())


async def _tenant_id(database: Database) -> str:
    async with database.read() as conn:
        return str((await conn.execute(tenants.select().where(tenants.c.slug == "acme"))).mappings().one()["id"])
