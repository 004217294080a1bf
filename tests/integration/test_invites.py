"""Invitations calendars obey, from the client's side: a booking, two reschedules and a cancellation through the
HTTP API each reach the client's mailbox over SMTP with an invitation that `icalendar` parses, under one UID, with
SEQUENCE 0, 1, 2, 3 and the CANCEL last (RFC 5545 §3.8.7.4, RFC 5546 §2.1.4); and when the host's Microsoft 365 event
already invites the client, our email carries no second invitation while the event's body tells the host what the
client answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from icalendar import Calendar

from app import apply_tenant_file
from scheduling.model import PsaRecordKind
from storage.database import Database
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.connectwise import DEMO_MEMBER, FakeConnectWiseServer
from tests.fakes.graph import FakeGraphServer, serve_fake_graph
from tests.fakes.smtp import FakeSmtpServer, running_smtp_server
from tests.integration.test_booking_api import PAGE, booking_body
from tests.integration.test_fanout import tenant_file_with_email
from tests.integration.test_fanout_psa import TENANT
from tests.integration.test_fanout_psa import connectwise as connectwise  # a fixture

# RFC 5545 §3.6 / §3.6.1: a VCALENDAR must have PRODID and VERSION; a VEVENT must have UID and DTSTAMP, and DTSTART
# when the calendar has no METHOD... which iTIP (RFC 5546 §3.2.2 REQUEST, §3.2.5 CANCEL) makes required anyway,
# together with ORGANIZER, ATTENDEE, SUMMARY (REQUEST) and SEQUENCE (CANCEL).
CALENDAR_REQUIRED = ("PRODID", "VERSION", "METHOD")
EVENT_REQUIRED = ("UID", "DTSTAMP", "DTSTART", "DTEND", "ORGANIZER", "ATTENDEE", "SUMMARY", "SEQUENCE")


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with running_smtp_server() as server:
        yield server


async def eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen in time")
        await asyncio.sleep(0.1)


def invitations(message: EmailMessage) -> list[Calendar]:
    return [
        Calendar.from_ical(part.get_payload(decode=True))
        for part in message.walk()
        if part.get_content_type() == "text/calendar"
    ]


async def test_a_booking_two_reschedules_and_a_cancel_keep_one_uid_with_rising_sequence(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", smtp.password)
    path = tenant_file_with_email(tmp_path, smtp, reminders=False)
    await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
    client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
    try:
        guest = "guest@client.test"
        booked = await client.post(f"{PAGE}/bookings", json=booking_body("2026-11-24T15:00:00+00:00", guests=[guest]))
        assert booked.status == 201, await booked.text()
        await eventually(lambda: len(smtp.mailbox("dana@client.test")) == 1, "the confirmation")
        manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
        for number, start in enumerate(("2026-11-25T15:00:00+00:00", "2026-11-27T16:00:00+00:00"), start=2):
            moved = await client.post(f"{manage}/reschedule", json={"start": start})
            assert moved.status == 200, await moved.text()
            await eventually(lambda n=number: len(smtp.mailbox("dana@client.test")) == n, f"reschedule {number - 1}")
        assert (await client.post(f"{manage}/cancel", json={"reason": "No longer needed"})).status == 200
        await eventually(lambda: len(smtp.mailbox("dana@client.test")) == 4, "the cancellation")
    finally:
        await client.close()

    calendars = [invitations(message) for message in smtp.mailbox("dana@client.test")]
    assert [len(found) for found in calendars] == [1, 1, 1, 1], "each email carries exactly one invitation"
    parsed = [found[0] for found in calendars]
    events = [calendar.walk("VEVENT") for calendar in parsed]
    assert [len(found) for found in events] == [1, 1, 1, 1]
    for calendar, [event] in zip(parsed, events, strict=True):
        for name in CALENDAR_REQUIRED:
            assert name in calendar, name
        for name in EVENT_REQUIRED:
            assert name in event, (name, event.to_ical())
        assert str(calendar["VERSION"]) == "2.0"
        attendees = [str(attendee).lower() for attendee in event.get("ATTENDEE")]
        assert attendees == ["mailto:dana@client.test", f"mailto:{guest}"]
        assert str(event["ORGANIZER"]).lower() == "mailto:alice@acme-it.example"
    assert len({str(event["UID"]) for [event] in events}) == 1
    assert [int(event["SEQUENCE"]) for [event] in events] == [0, 1, 2, 3]
    assert [str(calendar["METHOD"]) for calendar in parsed] == ["REQUEST", "REQUEST", "REQUEST", "CANCEL"]
    assert [str(event["STATUS"]) for [event] in events] == ["CONFIRMED", "CONFIRMED", "CONFIRMED", "CANCELLED"]
    assert [event.decoded("DTSTART").isoformat() for [event] in events] == [
        "2026-11-24T15:00:00+00:00",
        "2026-11-25T15:00:00+00:00",
        "2026-11-27T16:00:00+00:00",
        "2026-11-27T16:00:00+00:00",
    ]
    # The guest gets the same invitations (each person one calendar entry).
    assert len(smtp.mailbox(guest)) == 4
    # The invitation's description carries the manage link while the booking stands.
    first = str(events[0][0]["DESCRIPTION"])
    assert "Reschedule or cancel: http://testserver/m/" in first
    assert "Microsoft Teams meeting" in first


HOST = "morgan@m365-it.example"
M365_TENANT = """
tenant: {{slug: m365, name: M365 IT, time_zone: UTC, holidays: [], reminders: false}}
users:
  - slug: morgan
    name: Morgan Meyer
    email: {host}
    time_zone: UTC
    primary_calendar: m365
    working_hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
appointment_types:
  - slug: call
    name: Support call
    duration: 30
    increment: 30
    location: {{kind: phone}}
    host: {{user: morgan}}
    questions:
      - {{key: phone, label: Phone number, required: true}}
      - {{key: company, label: Company name}}
integrations:
  m365:
    vendor: graph
    tenant_id: {tenant_id}
    client_id: {client_id}
    authority_host: {authority}
    authority_ca_file: {ca_file}
    graph_base_url: {graph}
    secrets_from_env: {{client_secret: M365_GRAPH_SECRET}}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@m365-it.example
    secrets_from_env: {{password: M365_SMTP_PASSWORD}}
"""


async def test_when_the_m365_event_invites_the_client_our_email_carries_no_second_invitation(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, smtp: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGraphServer()
    async with serve_fake_graph(fake) as graph:
        monkeypatch.setenv("M365_GRAPH_SECRET", fake.client_secret)
        monkeypatch.setenv("M365_SMTP_PASSWORD", smtp.password)
        path = tmp_path / "m365.yaml"
        path.write_text(
            M365_TENANT.format(
                host=HOST,
                tenant_id=fake.tenant_id,
                client_id=fake.client_id,
                authority=graph.authority_host,
                ca_file=graph.ca_file,
                graph=graph.graph_base_url,
                smtp_port=smtp.port,
                smtp_user=smtp.username,
            )
        )
        await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
        client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
        try:
            booked = await client.post(
                "/book/m365/call/bookings",
                json={
                    "start": "2026-11-25T14:00:00+00:00",
                    "name": "Robin Client",
                    "email": "robin@c.example",
                    "answers": {"phone": "+1 555 0100", "company": "Robin & <Co>"},
                    "guests": ["pat@c.example"],
                },
            )
            assert booked.status == 201, await booked.text()
            await eventually(lambda: len(smtp.received) == 1, "the confirmation email")
            manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
            assert (await client.post(f"{manage}/cancel", json={"reason": "Sorted by phone"})).status == 200
            await eventually(lambda: len(smtp.received) == 2, "the cancellation email")
        finally:
            await client.close()
    [event] = fake.mailbox_events(HOST)
    # Exchange invites the event's attendees itself: the client and the guest.
    attendees = {attendee["emailAddress"]["address"] for attendee in event["attendees"]}
    assert attendees == {"robin@c.example", "pat@c.example"}
    for mail in smtp.received:
        assert invitations(mail.message) == [], "a second invitation would make a second calendar entry"
        assert [part.get_filename() for part in mail.message.iter_attachments()] == []
    # The host's Outlook entry tells them what the client answered, under the questions' labels, escaped.
    body = event["body"]["content"]
    assert event["body"]["contentType"].lower() == "html"
    assert "<b>Phone number</b></td><td>+1 555 0100" in body
    assert "<b>Company name</b></td><td>Robin &amp; &lt;Co&gt;" in body
    assert "<b>Guests</b></td><td>pat@c.example" in body
    assert 'href="http://testserver/m/' in body
    assert "phone</b>" not in body, "answers show under their labels, not their keys"


async def test_the_psa_records_the_host_works_from_carry_the_answers_guests_and_manage_link(
    sqlite_database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str],
    smtp: FakeSmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ConnectWise shows a ticket's schedule entry with the ticket's description (its first note), so that is where
    the technician reads what the client said."""
    fake, site = connectwise
    monkeypatch.setenv("FANOUT_CW_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("FANOUT_CW_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("FANOUT_SMTP_PASSWORD", smtp.password)
    path = tmp_path / "fanout.yaml"
    path.write_text(
        PSA_TENANT.format(
            member=DEMO_MEMBER,
            site=site,
            codebase=fake.codebase,
            company=fake.company_id,
            public_key=fake.public_key,
            smtp_port=smtp.port,
            smtp_user=smtp.username,
        )
    )
    await apply_tenant_file(sqlite_database, make_settings(tmp_path), path, dry_run=False)
    fake.add_contact("Dana Client", "dana@client.example")
    client: TestClient = await start_client(sqlite_database, tmp_path, clock, run_workflows=True)
    try:
        booked = await client.post(
            "/book/fanout/onsite/bookings",
            json={
                "start": "2026-11-24T15:00:00+00:00",
                "name": "Dana Client",
                "email": "dana@client.example",
                "time_zone": "America/New_York",
                "answers": {"gate_code": "4711"},
                "guests": ["sam@client.example"],
            },
        )
        assert booked.status == 201, await booked.text()
        await eventually(lambda: len(fake.records(PsaRecordKind.SCHEDULE_ENTRY)) == 1, "the schedule entry")
    finally:
        await client.close()
    [ticket] = fake.records(PsaRecordKind.TICKET)
    [initial] = [note for note in fake.notes.values() if note.get("initial") and note["ticketId"] == ticket["id"]]
    description = str(initial["text"])
    assert "Gate code: 4711" in description
    assert "Guests: sam@client.example" in description
    assert "Eastern Time (New York), UTC\u221205:00" in description
    assert "Manage booking: http://testserver/m/" in description


PSA_TENANT = TENANT.replace(
    "    host: {{user: tech}}\n",
    "    host: {{user: tech}}\n    questions:\n      - {{key: gate_code, label: Gate code}}\n",
)
