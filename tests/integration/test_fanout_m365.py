"""Microsoft 365 end to end: a tenant connected to Graph (the stand-in over real HTTP, with msal against its TLS
login endpoint) and SMTP. Busy time in the host's Outlook calendar blocks the booking page; a booking creates the
Outlook event with a Teams meeting whose join link reaches the client's email; a reschedule moves the event and a
cancellation cancels it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import apply_tenant_file
from storage.database import Database
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.graph import FakeGraphServer, serve_fake_graph
from tests.fakes.smtp import running_smtp_server

HOST = "morgan@m365-it.example"
TENANT = """
# No reminders: the app's runner keeps real time while bookings follow the test clock, so a reminder would be due
# at once and interleave with the emails counted here (tests/integration/test_reminders.py covers reminders).
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
    name: Teams call
    duration: 30
    increment: 30
    location: {{kind: teams}}
    host: {{user: morgan}}
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


async def eventually(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen in time")
        await asyncio.sleep(0.1)


async def test_outlook_busy_time_blocks_the_page_and_a_booking_lands_moves_and_cancels_in_outlook(
    sqlite_database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGraphServer()
    busy_from = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    fake.add_busy(HOST, busy_from, busy_from + timedelta(hours=1), subject="Board meeting")
    async with serve_fake_graph(fake) as graph:
        with running_smtp_server() as smtp:
            monkeypatch.setenv("M365_GRAPH_SECRET", fake.client_secret)
            monkeypatch.setenv("M365_SMTP_PASSWORD", smtp.password)
            path = tmp_path / "m365.yaml"
            path.write_text(
                TENANT.format(
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
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    slots = await client.get(
                        "/book/m365/call/slots", params={"start": "2026-11-25", "end": "2026-11-25", "tz": "UTC"}
                    )
                    starts = [slot["start"] for slot in (await slots.json())["slots"]]
                    if "2026-11-25T10:00:00+00:00" not in starts:
                        break
                    assert asyncio.get_running_loop().time() < deadline, "Outlook busy time never blocked 10:00"
                    await asyncio.sleep(0.2)
                assert "2026-11-25T10:30:00+00:00" not in starts
                assert "2026-11-25T11:00:00+00:00" in starts

                booked = await client.post(
                    "/book/m365/call/bookings",
                    json={"start": "2026-11-25T14:00:00+00:00", "name": "Robin Client", "email": "robin@c.example"},
                )
                assert booked.status == 201, await booked.text()
                await eventually(lambda: len(smtp.received) == 1, "the confirmation email")
                [event] = fake.mailbox_events(HOST)
                assert event["start"]["dateTime"].startswith("2026-11-25T14:00:00")
                assert event["isOnlineMeeting"] is True
                join_url = event["onlineMeeting"]["joinUrl"]
                assert join_url.startswith("https://teams.microsoft.com/l/meetup-join/")
                assert "robin@c.example" in str(event["attendees"])
                mail = smtp.received[0].message
                parts = [part.get_payload(decode=True) or b"" for part in mail.walk() if not part.is_multipart()]
                # The meeting the client joins is the one Graph made (today it travels in the invitation).
                assert any(join_url.encode() in part.replace(b"\r\n ", b"") for part in parts), parts

                manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
                moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-26T15:00:00+00:00"})
                assert moved.status == 200, await moved.text()
                await eventually(
                    lambda: fake.mailbox_events(HOST)[0]["start"]["dateTime"].startswith("2026-11-26T15:00:00"),
                    "the event move",
                )
                assert (await client.post(f"{manage}/cancel", json={"reason": "No longer needed"})).status == 200
                await eventually(lambda: fake.mailbox_events(HOST)[0]["isCancelled"], "the event cancellation")
                assert len(fake.mailbox_events(HOST)) == 1
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    async with sqlite_database.read() as conn:
                        states = (await conn.execute(select(workflow_jobs.c.kind, workflow_jobs.c.state))).all()
                    if {state for _kind, state in states} == {"completed"}:
                        break
                    assert asyncio.get_running_loop().time() < deadline, states
                    await asyncio.sleep(0.1)
                assert len(smtp.received) == 3
                assert {kind for kind, _state in states} >= {
                    "create_m365_event",
                    "update_m365_event",
                    "cancel_m365_event",
                }
            finally:
                await client.close()
