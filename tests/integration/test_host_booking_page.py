"""The booking's host page (`/h/{token}`, "Open booking" on the host's Teams card) over real HTTP, with the workflow
run against the ConnectWise stand-in: the host sees the booking, every answer under its label, the ticket with a
link to ConnectWise's ticket screen, and each step Slotwise ran, a failed one with the vendor's reason. Only the
host link's own token opens it; a forged, foreign-purpose or expired one gets a clear page."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from admin import host_view
from app import apply_tenant_file
from integrations.connectwise.adapter import ConnectWisePsa
from scheduling.model import PsaRecordKind
from storage.database import Database
from storage.repositories import SqlAgentKeys
from storage.tables import workflow_jobs
from tests.conftest import FixedClock, make_settings, start_client
from tests.fakes.connectwise import DEMO_FALLBACK_COMPANY, DEMO_MEMBER, FakeConnectWiseServer
from tests.integration.test_addin_recipients import connectwise

__all__ = ["connectwise"]  # the ConnectWise stand-in fixture, shared with the recipient tests

TENANT = """
tenant: {{slug: hostview, name: Hostview IT, time_zone: America/New_York, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@hostview-it.example
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
    questions:
      - {{key: phone, label: Best phone number, required: true, max_length: 40}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket, ticket_board: Service Desk}}
          - {{action: create_schedule_entry}}
  - slug: remote
    name: Remote session
    duration: 60
    increment: 60
    location: {{kind: phone}}
    host: {{user: tech}}
    questions:
      - {{key: phone, label: Best phone number, required: true, max_length: 40}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket, ticket_board: Retired Board}}
  - slug: followup
    name: Follow-up call
    duration: 60
    increment: 60
    location: {{kind: phone}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: add_ticket_note, note: Follow-up booked by the client.}}
integrations:
  psa:
    vendor: connectwise
    site_url: {site}
    codebase: {codebase}
    company_id: {company}
    public_key: {public_key}
    fallback_company_identifier: {fallback}
    secrets_from_env: {{private_key: HOSTVIEW_CW_PRIVATE_KEY, client_id: HOSTVIEW_CW_CLIENT_ID}}
"""


@pytest.fixture
async def client(
    database: Database,
    tmp_path: Path,
    clock: FixedClock,
    connectwise: tuple[FakeConnectWiseServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[TestClient]:
    fake, site = connectwise
    monkeypatch.setenv("HOSTVIEW_CW_PRIVATE_KEY", fake.private_key)
    monkeypatch.setenv("HOSTVIEW_CW_CLIENT_ID", fake.client_id)
    path = tmp_path / "hostview.yaml"
    path.write_text(
        TENANT.format(
            member=DEMO_MEMBER,
            site=site,
            codebase=fake.codebase,
            company=fake.company_id,
            public_key=fake.public_key,
            fallback=DEMO_FALLBACK_COMPANY,
        )
    )
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    started = await start_client(database, tmp_path, clock, run_workflows=True)
    yield started
    await started.close()


async def eventually(check: Callable[[], Any], seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the workflow did not finish in time")
        await asyncio.sleep(0.1)


async def book(client: TestClient, start: str, name: str, phone: str, kind: str = "onsite") -> dict[str, Any]:
    body = {
        "start": start,
        "name": name,
        "email": "dana@client.example",
        "time_zone": "Europe/Berlin",
        "answers": {"phone": phone},
    }
    response = await client.post(f"/book/hostview/{kind}/bookings", json=body)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def states(database: Database, booking_id: str) -> dict[str, str]:
    async with database.read() as conn:
        rows = await conn.execute(
            select(workflow_jobs.c.kind, workflow_jobs.c.state).where(workflow_jobs.c.booking_id == booking_id)
        )
        return {str(kind): str(state) for kind, state in rows}


async def host_path(database: Database, booking_id: str) -> str:
    async with database.read() as conn:
        payload = (
            await conn.execute(select(workflow_jobs.c.payload).where(workflow_jobs.c.booking_id == booking_id))
        ).first()
    assert payload is not None
    return urlsplit(payload[0]["booking"]["host_url"]).path


async def test_the_host_page_shows_the_booking_its_answers_its_ticket_and_what_ran(
    client: TestClient, database: Database, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    fake, _site = connectwise
    booked = await book(client, "2026-11-24T15:00:00+00:00", "Dana <script>alert(1)</script> Client", "+1 555 0100")

    async def done() -> bool:
        return set((await states(database, booked["id"])).values()) == {"completed"}

    await eventually(done)
    (ticket,) = fake.records(PsaRecordKind.TICKET)
    response = await client.get(await host_path(database, booked["id"]))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = await response.text()
    assert "<h1>On-site visit with Dana &lt;script&gt;alert(1)&lt;/script&gt; Client</h1>" in page
    assert "<script>alert(1)" not in page
    assert "<dt>Best phone number</dt><dd>+1 555 0100</dd>" in page
    # In the host's zone, and the client's own time beside it.
    assert "Tuesday 24 November 2026, 10:00\u201311:00 (America/New York)" in page
    assert "16:00\u201317:00 (Europe/Berlin)" in page
    assert f"#{ticket['id']}" in page
    expected = html.escape(
        f"/{fake.codebase}/services/system_io/Service/fv_sr100_request.rails?service_recid={ticket['id']}"
        f"&companyName={fake.company_id}"
    )
    assert expected in page
    assert "<strong>Create ticket in ConnectWise PSA</strong>: Done" in page
    assert "<strong>Create schedule entry in ConnectWise PSA</strong>: Done" in page
    assert 'role="alert"' not in page


async def test_a_booking_on_a_ticket_its_request_named_shows_that_ticket_though_no_step_made_one(
    client: TestClient,
    database: Database,
    connectwise: tuple[FakeConnectWiseServer, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, _site = connectwise
    ticket_id = fake.add_ticket("Printer on fire")
    key = await SqlAgentKeys(database).create_key("hostview", "service desk")
    made = await client.post(
        "/api/v1/scheduling-requests",
        json={"appointment_type": "followup", "ticket": str(ticket_id)},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert made.status == 201, await made.text()
    link = urlsplit((await made.json())["url"]).path
    body = {"start": "2026-11-25T15:00:00+00:00", "name": "Dana Client", "email": "dana@client.example"}
    response = await client.post(f"{link}/bookings", json={**body, "time_zone": "UTC"})
    assert response.status == 201, await response.text()
    booked = await response.json()

    async def done() -> bool:
        return set((await states(database, booked["id"])).values()) == {"completed"}

    await eventually(done)
    # The workflow only added a note to the ticket: no step reported the ticket, the page still names it.
    assert [note["ticketId"] for note in fake.records(PsaRecordKind.NOTE)] == [ticket_id]
    assert [row["id"] for row in fake.records(PsaRecordKind.TICKET)] == [ticket_id]
    page = await (await client.get(await host_path(database, booked["id"]))).text()
    assert f"<dt>Ticket</dt><dd>#{fake.ticket_number(ticket_id)}" in page
    expected = html.escape(
        f"/{fake.codebase}/services/system_io/Service/fv_sr100_request.rails?service_recid={ticket_id}"
        f"&companyName={fake.company_id}"
    )
    assert expected in page

    # A PSA that does not name the ticket's address in time (Autotask asks its zone for it) neither holds the page
    # up nor hides the ticket: the page names it, without the link.
    async def hangs(*_args: Any) -> str:
        await asyncio.sleep(30)
        return "https://never.example/"

    monkeypatch.setattr(host_view, "TICKET_LINK_SECONDS", 0.3)
    monkeypatch.setattr(ConnectWisePsa, "ticket_web_url", hangs)
    started = asyncio.get_running_loop().time()
    page = await (await client.get(await host_path(database, booked["id"]))).text()
    assert asyncio.get_running_loop().time() - started < 5
    assert f"<dt>Ticket</dt><dd>#{fake.ticket_number(ticket_id)}</dd>" in page
    assert "Open ticket" not in page


async def test_a_failed_step_is_on_the_host_page_with_the_vendors_reason(
    client: TestClient, database: Database, connectwise: tuple[FakeConnectWiseServer, str]
) -> None:
    booked = await book(client, "2026-11-24T16:00:00+00:00", "Dana Client", "+1 555 0101", kind="remote")

    async def settled() -> bool:
        found = await states(database, booked["id"])
        return bool(found) and not {"waiting", "available", "running", "retryable"} & set(found.values())

    await eventually(settled)
    page = await (await client.get(await host_path(database, booked["id"]))).text()
    assert "1 step failed" in page
    assert '<strong>Create ticket in ConnectWise PSA</strong>: <span class="field-error">Failed</span>' in page
    assert "Retired Board" in page
    assert "IntegrationRejected" not in page


async def test_only_the_host_links_own_unexpired_token_opens_the_page(
    client: TestClient, database: Database, clock: FixedClock
) -> None:
    booked = await book(client, "2026-11-24T17:00:00+00:00", "Dana Client", "+1 555 0102")
    path = await host_path(database, booked["id"])
    assert (await client.get(path)).status == 200
    # The client's manage link is another purpose: it never opens the host page, and the host link never manages.
    manage = urlsplit(booked["manage_url"]).path
    token = manage.rsplit("/", 1)[1]
    refused = await client.get(f"/h/{token}", headers={"Accept": "text/html"})
    assert refused.status == 404
    assert "not valid" in await refused.text()
    assert (await client.get("/m/" + path.rsplit("/", 1)[1])).status == 404
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await client.get(tampered)).status == 404
    # Thirty days after the appointment the link has expired, and says what to do instead.
    clock.moment = clock.moment + timedelta(days=40)
    expired = await client.get(path, headers={"Accept": "text/html"})
    assert expired.status == 410
    assert "upcoming" in await expired.text()
