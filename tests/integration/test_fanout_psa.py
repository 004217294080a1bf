"""Workflow Mode end to end against ConnectWise and SMTP stand-ins over real HTTP and SMTP: the ticket number
created by one step reaches the client's email, and moves and cancellations follow the schedule entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app import apply_tenant_file
from scheduling.model import PsaRecordKind
from storage.database import Database
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.connectwise import DEMO_MEMBER, FakeConnectWiseServer
from tests.fakes.smtp import running_smtp_server

TENANT = """
tenant: {{slug: fanout, name: Fanout IT, time_zone: America/New_York, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@fanout-it.example
    time_zone: America/New_York
    primary_calendar: psa
    psa_member: {member}
    working_hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
appointment_types:
  - slug: onsite
    name: On-site visit
    duration: 60
    increment: 60
    location: {{kind: onsite, detail: Your office}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket, ticket_board: Service Desk}}
          - {{action: create_schedule_entry}}
          - action: send_email
            template: custom
            subject: "Booked: ticket #{{{{ ticket.number }}}}"
            body: "<p>Hi {{{{ client.name }}}}, your ticket is {{{{ ticket.number }}}}.</p>"
        rescheduled:
          - {{action: move_schedule_entry}}
          - {{action: add_ticket_note, note: The client moved the visit.}}
        cancelled:
          - {{action: remove_schedule_entry}}
integrations:
  psa:
    vendor: connectwise
    site_url: {site}
    codebase: {codebase}
    company_id: {company}
    public_key: {public_key}
    secrets_from_env: {{private_key: FANOUT_CW_PRIVATE_KEY, client_id: FANOUT_CW_CLIENT_ID}}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@fanout-it.example
    secrets_from_env: {{password: FANOUT_SMTP_PASSWORD}}
"""


@pytest.fixture
async def connectwise() -> AsyncIterator[tuple[FakeConnectWiseServer, str]]:
    fake = FakeConnectWiseServer()
    server = TestServer(fake.build_app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


async def eventually(check: Callable[[], Any], seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the workflow did not finish in time")
        await asyncio.sleep(0.1)


async def test_a_workflow_creates_a_ticket_and_entry_and_emails_the_ticket_number(
    sqlite_database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, site = connectwise
    with running_smtp_server() as smtp:
        monkeypatch.setenv("FANOUT_CW_PRIVATE_KEY", fake.private_key)
        monkeypatch.setenv("FANOUT_CW_CLIENT_ID", fake.client_id)
        monkeypatch.setenv("FANOUT_SMTP_PASSWORD", smtp.password)
        path = tmp_path / "fanout.yaml"
        path.write_text(
            TENANT.format(
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
            body = {
                "start": "2026-11-24T15:00:00+00:00",
                "name": "Dana Client",
                "email": "dana@client.example",
                "time_zone": "UTC",
            }
            booked = await client.post("/book/fanout/onsite/bookings", json=body)
            assert booked.status == 201, await booked.text()
            await eventually(lambda: len(smtp.received) == 1)
            [ticket] = fake.records(PsaRecordKind.TICKET)
            [entry] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
            assert entry["member"]["identifier"] == DEMO_MEMBER
            assert entry["dateStart"] == "2026-11-24T15:00:00Z"
            assert smtp.received[0].message["Subject"] == f"Booked: ticket #{ticket['id']}"

            manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
            assert (
                await client.post(f"{manage}/reschedule", json={"start": "2026-11-25T16:00:00+00:00"})
            ).status == 200
            await eventually(lambda: len(fake.records(PsaRecordKind.NOTE)) == 1)
            [moved] = fake.records(PsaRecordKind.SCHEDULE_ENTRY)
            assert moved["dateStart"] == "2026-11-25T16:00:00Z"
            assert len(fake.records(PsaRecordKind.TICKET)) == 1

            assert (await client.post(f"{manage}/cancel", json={})).status == 200
            await eventually(lambda: fake.records(PsaRecordKind.SCHEDULE_ENTRY) == [])
        finally:
            await client.close()
