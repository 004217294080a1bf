"""An agent schedules on an existing PSA ticket: the booking, its move and its cancellation land on that ticket.

For ConnectWise, Autotask and HaloPSA alike, over real HTTP and SMTP: the request names the ticket by its id or by
the number the PSA shows (Autotask: T20261124.0001, not the id), and is refused with a clear message for a ticket
the PSA does not have or while the PSA is down. Booking through the link puts the schedule entry, the note and the
status on that ticket and creates no ticket; the emails quote the ticket's number; rescheduling moves and cancelling
removes what was made; and a create whose answer was lost is not made twice. On Autotask, the host joins the ticket
as a secondary resource and its primary resource stays.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from app import Overrides, apply_tenant_file, create_app
from storage.database import Database
from storage.repositories import SqlAgentKeys
from storage.tables import scheduling_requests, workflow_jobs
from tests.conftest import FixedClock, make_settings
from tests.fakes import autotask
from tests.fakes.smtp import running_smtp_server
from tests.integration.test_fanout_every_psa import Vendor, eventually, running_vendor

TENANT = """
tenant: {{slug: onticket, name: On Ticket IT, time_zone: UTC, holidays: []}}
users:
  - slug: tech
    name: Terry Tech
    email: terry@on-ticket.example
    time_zone: UTC
    primary_calendar: psa
    psa_member: "{member}"
    working_hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
appointment_types:
  - slug: visit
    name: Site visit
    duration: 60
    increment: 60
    location: {{kind: onsite, detail: Your office}}
    host: {{user: tech}}
    mode: workflow
    workflow:
      triggers:
        client_scheduled:
          - {{action: create_ticket}}
          - {{action: create_schedule_entry}}
          - {{action: add_ticket_note, note: Visit booked by the client.}}
          - {{action: set_ticket_status, status_after_scheduling: Scheduled}}
          - action: send_email
            template: custom
            subject: "Booked: ticket #{{{{ ticket.number }}}}"
            body: "<p>Hi {{{{ client.name }}}}, your visit for ticket {{{{ ticket.number }}}} is booked.</p>"
        rescheduled:
          - {{action: move_schedule_entry}}
          - {{action: add_ticket_note, note: Visit moved by the client.}}
          - action: send_email
            template: custom
            subject: "Moved: ticket #{{{{ ticket.number }}}}"
            body: "<p>Your visit for ticket {{{{ ticket.number }}}} moved.</p>"
        cancelled:
          - {{action: remove_schedule_entry}}
          - {{action: add_ticket_note, note: Visit cancelled by the client.}}
          - action: send_email
            template: custom
            subject: "Cancelled: ticket #{{{{ ticket.number }}}}"
            body: "<p>Your visit for ticket {{{{ ticket.number }}}} is cancelled.</p>"
integrations:
  psa:
{psa}
  email:
    vendor: smtp
    host: 127.0.0.1
    port: {smtp_port}
    start_tls: false
    username: {smtp_user}
    from_address: bookings@on-ticket.example
    secrets_from_env: {{password: ONTICKET_SMTP_PASSWORD}}
"""

API = "/api/v1/scheduling-requests"
VENDORS = ["connectwise", "autotask", "halopsa"]


async def start_wired_client(database: Database, tmp_path: Path, clock: FixedClock, **settings: Any) -> TestClient:
    config = make_settings(tmp_path, **settings)
    # create_app wires the pages to each tenant's PSA (through the same adapters the runner uses).
    app = create_app(config, overrides=Overrides(clock=clock, database=database))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def apply_tenant(
    database: Database, tmp_path: Path, vendor: Vendor, smtp_port: int, smtp_user: str
) -> dict[str, str]:
    path = tmp_path / "onticket.yaml"
    path.write_text(TENANT.format(member=vendor.member, psa=vendor.psa_yaml, smtp_port=smtp_port, smtp_user=smtp_user))
    await apply_tenant_file(database, make_settings(tmp_path), path, dry_run=False)
    key = await SqlAgentKeys(database).create_key("onticket", "service desk")
    return {"Authorization": f"Bearer {key}"}


def seed_ticket(vendor: Vendor) -> tuple[int, int | None]:
    """A ticket the service desk opened in the PSA; on Autotask a colleague is its primary resource."""
    if vendor.name == "autotask":
        colleague = vendor.fake.add_resource("Cole", "League", "cole@acme-it.example")
        return vendor.fake.add_ticket("Printer on fire", primary=colleague), colleague
    return vendor.fake.add_ticket("Printer on fire"), None


def tickets_at(vendor: Vendor) -> dict[int, dict[str, Any]]:
    """Every ticket the PSA holds, seeded or made through the API."""
    table = vendor.fake.tables["Tickets"] if vendor.name == "autotask" else vendor.fake.tickets
    return {int(ticket_id): dict(row) for ticket_id, row in table.items()}


async def every_step_done(database: Database, seconds: float = 20) -> None:
    """Until no workflow step is still to run: steps of one run no longer finish in order."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        async with database.read() as conn:
            pending = (
                await conn.execute(
                    select(workflow_jobs.c.kind).where(
                        workflow_jobs.c.state.in_(("waiting", "available", "running", "retryable"))
                    )
                )
            ).all()
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"steps still pending: {pending}")
        await asyncio.sleep(0.05)


def records_on_ticket(vendor: Vendor, ticket_id: int) -> dict[str, list[dict[str, Any]]]:
    """The schedule entries (with their times) and notes hanging off the ticket, as the PSA holds them."""
    fake = vendor.fake
    if vendor.name == "connectwise":
        entries = [
            {"starts": row["dateStart"], "ends": row["dateEnd"], **row}
            for row in fake.entries.values()
            if row["objectId"] == ticket_id and row["type"]["identifier"] == "S"
        ]
        notes = [row for row in fake.notes.values() if row["ticketId"] == ticket_id and not row.get("initial")]
        return {"entries": entries, "notes": notes}
    if vendor.name == "autotask":
        tables = fake.tables
        calls = {
            link["serviceCallID"] for link in tables["ServiceCallTickets"].values() if link["ticketID"] == ticket_id
        }
        entries = [
            {"starts": row["startDateTime"], "ends": row["endDateTime"], **row}
            for row in tables["ServiceCalls"].values()
            if row["id"] in calls
        ]
        notes = [row for row in tables["TicketNotes"].values() if row["ticketID"] == ticket_id]
        return {"entries": entries, "notes": notes}
    entries = [
        {"starts": _iso(row["start_date"]), "ends": _iso(row["end_date"]), **row}
        for row in fake.appointments.values()
        if row.get("ticket_id") == ticket_id
    ]
    notes = [row for row in fake.actions.values() if row["ticket_id"] == ticket_id]
    return {"entries": entries, "notes": notes}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_of(vendor: Vendor, ticket_id: int) -> str:
    ticket = tickets_at(vendor)[ticket_id]
    if vendor.name == "connectwise":
        return str(ticket["status"]["name"])
    if vendor.name == "autotask":
        return str(autotask.SPECS["Tickets"].picklists["status"][ticket["status"]])
    return str(vendor.fake.statuses[ticket["status_id"]])


async def request_count(database: Database) -> int:
    async with database.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(scheduling_requests))).scalar_one())


@pytest.mark.parametrize("vendor_name", VENDORS)
async def test_a_request_names_its_ticket_by_id_or_by_the_number_the_psa_shows_and_keeps_both(
    vendor_name: str, sqlite_database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_vendor(vendor_name) as vendor:
        ticket_id, _ = seed_ticket(vendor)
        number = vendor.fake.ticket_number(ticket_id)
        with running_smtp_server() as smtp:
            for key, value in {**vendor.env, "ONTICKET_SMTP_PASSWORD": smtp.password}.items():
                monkeypatch.setenv(key, value)
            auth = await apply_tenant(sqlite_database, tmp_path, vendor, smtp.port, smtp.username)
            client = await start_wired_client(sqlite_database, tmp_path, clock)
            try:
                tickets_before = tickets_at(vendor)
                by_number = await client.post(API, json={"appointment_type": "visit", "ticket": number}, headers=auth)
                assert by_number.status == 201, await by_number.text()
                created = await by_number.json()
                assert created["ticket_id"] == str(ticket_id)
                assert created["ticket_number"] == number
                assert created["ticket"] == number
                assert created["ticket_bound"] is True
                assert "notice" not in created
                if vendor_name == "autotask":
                    assert number.startswith("T")
                    assert number != str(ticket_id)

                by_id = await client.post(
                    API, json={"appointment_type": "visit", "ticket": f" #{ticket_id} "}, headers=auth
                )
                assert by_id.status == 201, await by_id.text()
                assert {key: (await by_id.json())[key] for key in ("ticket_id", "ticket_number", "ticket")} == {
                    "ticket_id": str(ticket_id),
                    "ticket_number": number,
                    "ticket": number,
                }

                # The client's page names the ticket as the PSA shows it.
                page = await client.get(created["url"].removeprefix("http://testserver"))
                assert page.status == 200
                assert f"Regarding ticket #{number}" in await page.text()

                stored = await request_count(sqlite_database)
                unknown = "T19990101.0042" if vendor_name == "autotask" else "987654"
                refused = await client.post(API, json={"appointment_type": "visit", "ticket": unknown}, headers=auth)
                assert refused.status == 422, await refused.text()
                error = (await refused.json())["error"]
                assert error["code"] == "unknown_ticket"
                assert error["field"] == "ticket"
                assert unknown in error["message"]

                vendor.fake.fail_next(503)
                down = await client.post(API, json={"appointment_type": "visit", "ticket": number}, headers=auth)
                assert down.status == 503, await down.text()
                assert int(down.headers["Retry-After"]) > 0
                message = (await down.json())["error"]["message"]
                assert number in message
                assert "PSA" in message
                assert "No link was made" in message

                assert await request_count(sqlite_database) == stored
                # Looking tickets up made and changed nothing at the PSA.
                assert tickets_at(vendor) == tickets_before
            finally:
                await client.close()


@pytest.mark.parametrize("vendor_name", VENDORS)
async def test_a_ticket_bound_booking_lands_on_that_ticket_and_moves_and_goes_with_it(
    vendor_name: str, sqlite_database: Database, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_vendor(vendor_name) as vendor:
        fake = vendor.fake
        ticket_id, primary = seed_ticket(vendor)
        number = fake.ticket_number(ticket_id)
        with running_smtp_server() as smtp:
            for key, value in {**vendor.env, "ONTICKET_SMTP_PASSWORD": smtp.password}.items():
                monkeypatch.setenv(key, value)
            auth = await apply_tenant(sqlite_database, tmp_path, vendor, smtp.port, smtp.username)
            client = await start_wired_client(sqlite_database, tmp_path, clock, run_workflows=True)
            try:
                answer = await client.post(API, json={"appointment_type": "visit", "ticket": number}, headers=auth)
                assert answer.status == 201, await answer.text()
                link = (await answer.json())["url"].removeprefix("http://testserver")
                tickets_before = set(tickets_at(vendor))

                # The first record the booking makes at the PSA is saved, but its answer never arrives: the step's
                # re-run must find it rather than make a second one.
                fake.lose_next_response()
                booked = await client.post(
                    f"{link}/bookings",
                    json={
                        "start": "2026-11-25T14:00:00+00:00",
                        "name": "Robin Client",
                        "email": "robin@client.example",
                        "time_zone": "UTC",
                    },
                )
                assert booked.status == 201, await booked.text()
                await eventually(lambda: len(smtp.received) == 1, f"{vendor_name}: the confirmation email")
                # The email waits only for the ticket it quotes, not for the entry, note and status.
                await every_step_done(sqlite_database)
                assert fake.responses_lost == 1

                assert set(tickets_at(vendor)) == tickets_before, "a ticket was created"
                on_ticket = records_on_ticket(vendor, ticket_id)
                [entry] = on_ticket["entries"]
                assert entry["starts"].startswith("2026-11-25T14:00")
                [note] = on_ticket["notes"]
                assert "Visit booked by the client." in str(note)
                assert status_of(vendor, ticket_id) == "Scheduled"
                assert smtp.received[0].message["Subject"] == f"Booked: ticket #{number}"
                if vendor_name == "autotask":
                    ticket = fake.tables["Tickets"][ticket_id]
                    assert ticket["assignedResourceID"] == primary, "the primary resource was replaced"
                    secondaries = [
                        row["resourceID"]
                        for row in fake.tables["TicketSecondaryResources"].values()
                        if row["ticketID"] == ticket_id
                    ]
                    assert secondaries == [int(vendor.member)]
                    # The service call is a visit to the ticket's company.
                    assert entry["companyID"] == ticket["companyID"]

                manage = (await booked.json())["manage_url"].removeprefix("http://testserver")
                moved = await client.post(f"{manage}/reschedule", json={"start": "2026-11-26T15:00:00+00:00"})
                assert moved.status == 200, await moved.text()
                # The email does not wait for the move (it quotes nothing the move makes), so wait for both.
                await eventually(
                    lambda: (
                        len(smtp.received) == 2
                        and len(records_on_ticket(vendor, ticket_id)["notes"]) == 2
                        and records_on_ticket(vendor, ticket_id)["entries"][0]["starts"].startswith("2026-11-26T15:00")
                    ),
                    f"{vendor_name}: the rescheduled email and the move",
                )
                await every_step_done(sqlite_database)
                on_ticket = records_on_ticket(vendor, ticket_id)
                [entry] = on_ticket["entries"]
                assert entry["starts"].startswith("2026-11-26T15:00")
                assert len(on_ticket["notes"]) == 2
                assert smtp.received[1].message["Subject"] == f"Moved: ticket #{number}"

                cancelled = await client.post(f"{manage}/cancel", json={"reason": "Fixed itself"})
                assert cancelled.status == 200, await cancelled.text()
                await eventually(
                    lambda: (
                        len(smtp.received) == 3
                        and len(records_on_ticket(vendor, ticket_id)["notes"]) == 3
                        and records_on_ticket(vendor, ticket_id)["entries"] == []
                    ),
                    f"{vendor_name}: the cancellation email and the removal",
                )
                await every_step_done(sqlite_database)
                on_ticket = records_on_ticket(vendor, ticket_id)
                assert on_ticket["entries"] == []
                assert len(on_ticket["notes"]) == 3
                assert smtp.received[2].message["Subject"] == f"Cancelled: ticket #{number}"

                assert set(tickets_at(vendor)) == tickets_before, "a ticket was created"
                async with sqlite_database.read() as conn:
                    steps = (
                        await conn.execute(select(workflow_jobs.c.kind, workflow_jobs.c.state, workflow_jobs.c.output))
                    ).all()
                assert {state for _kind, state, _output in steps} == {"completed"}, steps
                [ticket_step] = [output for kind, _state, output in steps if kind == "create_ticket"]
                assert ticket_step["ticket_created"] is False
                assert ticket_step["ticket_id"] == str(ticket_id)
                assert ticket_step["ticket_number"] == number
            finally:
                await client.close()


async def test_without_a_psa_the_ticket_is_kept_as_a_label_and_the_answer_says_so(
    tenant_db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    client = await start_wired_client(tenant_db, tmp_path, clock)
    try:
        key = await SqlAgentKeys(tenant_db).create_key("acme", "support desk")
        answer = await client.post(
            API, json={"appointment_type": "demo", "ticket": " T-1001 "}, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status == 201, await answer.text()
        body = await answer.json()
        assert body["ticket"] == "T-1001"
        assert body["ticket_id"] is None
        assert body["ticket_number"] is None
        assert body["ticket_bound"] is False
        assert "No PSA is connected" in body["notice"]
        page = await client.get(body["url"].removeprefix("http://testserver"))
        assert "Regarding ticket #T-1001" in await page.text()
    finally:
        await client.close()
